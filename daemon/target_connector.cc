#include "daemon/target_connector.h"

#include "base/escape_filter.h"
#include "base/limits.h"
#include "base/log.h"
#include "base/sys.h"
#include "proto/handshake.h"

namespace qrexec::daemon {
namespace {

constexpr std::string_view kDispvmPrefix = "@dispvm:";
constexpr size_t kMaxReplyBody = 64;

// What qubesd returns as the name of a new disposable goes into a socket
// path: only plain name characters.
bool IsSafeDomainRef(std::string_view ref) {
  if (ref.empty() || ref.size() > 128) return false;
  for (char c : ref) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-' || c == '.' || c == ':';
    if (!ok) return false;
  }
  return ref != "." && ref != "..";
}

}  // namespace

Result<std::unique_ptr<TargetConnector>> TargetConnector::Start(event::Loop& loop,
                                                                const TargetPaths& paths,
                                                                TargetRequest request,
                                                                Callbacks callbacks) {
  std::unique_ptr<TargetConnector> self(
      new TargetConnector(loop, paths, std::move(request), std::move(callbacks)));
  TargetConnector* raw = self.get();
  auto timer = loop.AddTimer(std::chrono::nanoseconds(0), [raw] { raw->Begin(); });
  if (!timer) return tl::unexpected(timer.error());
  raw->kickoff_ = std::move(*timer);
  return self;
}

TargetConnector::TargetConnector(event::Loop& loop, const TargetPaths& paths, TargetRequest request,
                                 Callbacks callbacks)
    : loop_(loop), paths_(paths), request_(std::move(request)), callbacks_(std::move(callbacks)) {}

TargetConnector::~TargetConnector() { *alive_ = false; }

void TargetConnector::Begin() {
  kickoff_.Reset();
  if (request_.command.size() + 1 + proto::kExecParamsSize > limits::kMaxCommandBody)
    return Fail("command too long for the target daemon");
  if (request_.dest.starts_with(kDispvmPrefix)) {
    if (!request_.autostart) return Fail("disposable target without autostart");
    return CreateDisposable();
  }
  if (!IsSafeDomainRef(request_.dest)) return Fail("invalid target name");
  socket_dest_ = request_.dest;
  Connect(request_.autostart);
}

void TargetConnector::Qubesd(const std::string& method, const std::string& dest,
                             const std::string& payload,
                             std::function<void(Result<admin::Reply>)> then) {
  auto call = QubesdCall::Start(loop_, paths_.qubesd_socket, method, dest, payload, then);
  if (!call) return then(tl::unexpected(call.error()));
  qubesd_ = std::move(*call);
}

void TargetConnector::CreateDisposable() {
  stage_ = Stage::kCreating;
  std::string tmpl = request_.dest.substr(kDispvmPrefix.size());
  if (!IsSafeDomainRef(tmpl)) return Fail("invalid disposable template");
  Qubesd("admin.vm.CreateDisposable", tmpl, "uuid", [this](Result<admin::Reply> reply) {
    if (!reply) return Fail("CreateDisposable: " + reply.error().ToString());
    if (!reply->ok) return Fail("CreateDisposable: " + SanitizeForLog(reply->exception_type));
    if (!IsSafeDomainRef(reply->payload)) return Fail("CreateDisposable: bad disposable name");
    disposable_ = reply->payload;
    socket_dest_ = disposable_;
    LOG_DEBUG("created disposable {}", disposable_);
    StartDomain(disposable_);
  });
}

void TargetConnector::StartDomain(const std::string& dest) {
  stage_ = Stage::kStarting;
  LOG_DEBUG("starting {}", SanitizeForLog(dest));
  Qubesd("admin.vm.Start", dest, "", [this](Result<admin::Reply> reply) {
    qubesd_.reset();
    if (!reply) return Fail("admin.vm.Start: " + reply.error().ToString());
    if (!StartSucceeded(*reply))
      return Fail("admin.vm.Start: " + SanitizeForLog(reply->exception_type));
    Connect(false);
  });
}

void TargetConnector::Connect(bool may_autostart) {
  stage_ = Stage::kConnecting;
  std::string path = paths_.socket_dir + "/qrexec." + socket_dest_;
  auto fd = sys::UnixConnect(path, /*nonblocking=*/true);
  if (!fd) {
    bool absent =
        fd.error().kind == ErrorKind::kNotFound || fd.error().kind == ErrorKind::kDisconnected;
    if (absent && may_autostart) return StartDomain(socket_dest_);
    return Fail(absent ? "target not running" : fd.error().ToString());
  }
  auto conn = MessageConn::Create(loop_, std::move(*fd), kMaxReplyBody,
                                  {[this](proto::Message m) { OnMessage(std::move(m)); },
                                   [this](Status st) { OnClose(std::move(st)); }});
  if (!conn) return Fail(conn.error().ToString());
  conn_ = std::move(*conn);
  // Our hello and the request go out at once, without waiting for the
  // daemon's hello: the socket buffers them, the daemon reads them after
  // sending its own (§2.5 "Daemon client socket"), and the round trip saved
  // is on every call's critical path. The daemon's hello is still checked
  // before its reply is believed.
  auto request = proto::EncodeExecRequest(
      {proto::ExecType::kExecCmdline, static_cast<uint32_t>(request_.own_domid), 0, request_.command});
  if (!request) return Fail("cannot encode the command");
  conn_->Send(proto::EncodeHello(proto::kClientProtocolVersion));
  conn_->Send(*request);
  stage_ = Stage::kHello;
}

void TargetConnector::OnMessage(proto::Message message) {
  if (stage_ == Stage::kHello) {
    auto hello = proto::DecodeHello(message.header, message.body);
    if (!hello) return Fail("bad hello from target daemon");
    if (!proto::NegotiateClientSocket(hello->version)) return Fail("target daemon too old");
    stage_ = Stage::kReply;
    return;
  }
  if (stage_ == Stage::kReply) {
    auto reply =
        proto::DecodeClientReply(message.header, message.body, proto::MsgType::kExecCmdline);
    if (!reply) return Fail("bad reply from target daemon: " + reply.error().ToString());
    return Succeed(*reply);
  }
  LOG_WARNING("unexpected data from target daemon {}", SanitizeForLog(socket_dest_));
  conn_.reset();
  KillDisposable();
}

void TargetConnector::OnClose(Status status) {
  if (stage_ == Stage::kLingering) {
    conn_.reset();
    return KillDisposable();
  }
  Fail("target daemon closed the connection" +
       (status ? std::string() : ": " + status.error().ToString()));
}

void TargetConnector::Fail(const std::string& why) {
  LOG_ERROR("cannot connect to {}: {}", SanitizeForLog(request_.dest), why);
  conn_.reset();
  auto alive = alive_;
  if (!connected_reported_) {
    connected_reported_ = true;
    callbacks_.on_connected(MakeError(ErrorKind::kInternal, why));
    if (!*alive) return;
  }
  if (!disposable_.empty()) return KillDisposable();
  Done();
}

bool TargetConnector::SourceTerminated(const proto::ExecParams& connection) {
  if (stage_ != Stage::kLingering || connection != connection_) return false;
  LOG_DEBUG("the caller of {} went away", SanitizeForLog(socket_dest_));
  conn_.reset();
  KillDisposable();
  return true;
}

void TargetConnector::Succeed(proto::ExecParams params) {
  connected_reported_ = true;
  connection_ = params;
  bool linger = !disposable_.empty();
  stage_ = linger ? Stage::kLingering : Stage::kDone;
  if (!linger) conn_.reset();
  auto alive = alive_;
  callbacks_.on_connected(params);
  if (!*alive || linger) return;
  Done();
}

void TargetConnector::KillDisposable() {
  if (disposable_.empty()) return Done();
  stage_ = Stage::kKilling;
  std::string victim = std::exchange(disposable_, std::string());
  LOG_DEBUG("killing disposable {}", victim);
  Qubesd("admin.vm.Kill", victim, "", [this, victim](Result<admin::Reply> reply) {
    if (!reply || !reply->ok) LOG_WARNING("admin.vm.Kill {} failed", victim);
    Done();
  });
}

void TargetConnector::Done() {
  stage_ = Stage::kDone;
  if (callbacks_.on_finished) {
    auto finished = std::move(callbacks_.on_finished);
    finished();
  }
}

}  // namespace qrexec::daemon
