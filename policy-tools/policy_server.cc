#include "policy_server.h"

#include <fmt/core.h>
#include <sys/stat.h>

#include <cerrno>
#include <chrono>
#include <nlohmann/json.hpp>
#include <string_view>

#include "base/escape_filter.h"
#include "base/limits.h"
#include "base/log.h"
#include "base/sys.h"
#include "eval_request.h"
#include "policy/socket_request.h"

namespace qrexec::policy_tools {
namespace {

constexpr size_t kMaxConnections = 1024;
// policy.EvalSimple/EvalGUI are reached from qubes: they get a share of their
// own, so that they can never take the slots qrexec-daemon needs.
constexpr size_t kMaxEvalConnections = 256;
constexpr size_t kMaxPendingAsks = limits::kMaxPendingPolicy;
constexpr size_t kMaxAgentCalls = 2 * limits::kMaxPendingPolicy;
constexpr std::string_view kEvalSimpleService = "policy.EvalSimple";
constexpr std::string_view kEvalGuiService = "policy.EvalGUI";

const policy::SystemInfo& EmptySystemInfo() {
  static const policy::SystemInfo kEmpty;
  return kEmpty;
}

bool HasGuiTag(const policy::SystemInfo& info, std::string_view name, const std::string& tag) {
  const policy::Domain* domain = info.Find(name);
  return domain != nullptr && domain->HasTag(tag);
}

}  // namespace

struct PolicyServer::Listener {
  Kind kind;
  UniqueFd fd;
  event::FdWatch watch;  // after fd: unregistered before it closes
  bool paused = false;
};

struct PolicyServer::Connection {
  Kind kind = Kind::kPolicySocket;
  UniqueFd fd;
  event::FdWatch watch;  // after fd: unregistered before it closes
  std::chrono::steady_clock::time_point accepted;
  bool reading = true;  // the request has not arrived completely yet
  std::string untrusted_in;
  std::string out;
  size_t out_done = 0;
};

PolicyServer::PolicyServer(event::Loop& loop, PolicyStore& store, ServerOptions options)
    : loop_(loop), store_(store), options_(std::move(options)) {}

PolicyServer::~PolicyServer() = default;

Result<std::unique_ptr<PolicyServer>> PolicyServer::Create(event::Loop& loop, PolicyStore& store,
                                                           ServerOptions options) {
  std::unique_ptr<PolicyServer> server(new PolicyServer(loop, store, std::move(options)));
  for (auto [kind, path] : {std::pair{Kind::kPolicySocket, server->options_.socket_path},
                            {Kind::kEvalSimple, server->options_.eval_socket_path},
                            {Kind::kEvalGui, server->options_.gui_socket_path}}) {
    if (path.empty()) continue;
    if (auto status = server->Listen(kind, path); !status) return tl::unexpected(status.error());
  }
  if (auto status = server->StartSweeper(); !status) return tl::unexpected(status.error());
  return server;
}

Status PolicyServer::StartSweeper() {
  constexpr std::chrono::seconds kEverySecond{1};
  auto timer = loop_.AddTimer(
      kEverySecond, [this] { SweepSlowRequests(); }, kEverySecond);
  if (!timer) return tl::unexpected(timer.error());
  sweep_timer_ = std::move(*timer);
  return Ok();
}

void PolicyServer::SweepSlowRequests() {
  auto now = std::chrono::steady_clock::now();
  std::vector<uint64_t> slow;
  for (const auto& [id, conn] : connections_)
    if (conn->reading && now - conn->accepted > options_.request_timeout) slow.push_back(id);
  if (!slow.empty())
    LOG_WARNING("dropping {} connection(s) that did not send a request in time", slow.size());
  for (uint64_t id : slow) Close(id);
}

Status PolicyServer::Listen(Kind kind, const std::string& path) {
  auto fd = sys::UnixListen(path, 512, /*nonblocking=*/true);
  if (!fd) return tl::unexpected(fd.error());
  if (::chmod(path.c_str(), 0660) < 0) return ErrnoError("chmod " + path);
  auto listener = std::make_unique<Listener>(Listener{kind, std::move(*fd), {}, false});
  Listener* raw = listener.get();
  auto watch = loop_.WatchFd(raw->fd.get(), event::Interest::Read(),
                             [this, raw](event::Ready) { OnAccept(*raw); });
  if (!watch) return tl::unexpected(watch.error());
  raw->watch = std::move(*watch);
  listeners_.push_back(std::move(listener));
  return Ok();
}

void PolicyServer::OnAccept(Listener& listener) {
  for (int i = 0; i < 64; ++i) {
    auto fd = sys::Accept(listener.fd.get(), /*nonblocking=*/true);
    if (!fd) {
      int err = fd.error().sys_errno;
      if (err == EMFILE || err == ENFILE) {
        // Out of descriptors: stop accepting (a level-triggered listener
        // would spin) until a connection closes.
        LOG_WARNING("out of file descriptors; pausing accept");
        (void)listener.watch.SetInterest(event::Interest::None());
        listener.paused = true;
      } else if (fd.error().kind != ErrorKind::kOverloaded) {
        LOG_WARNING("accept: {}", fd.error().ToString());
      }
      return;
    }
    bool eval = listener.kind != Kind::kPolicySocket;
    if (connections_.size() >= kMaxConnections ||
        (eval && eval_connections_ >= kMaxEvalConnections)) {
      LOG_WARNING("too many connections ({}, {} for evaluation services), dropping one",
                  connections_.size(), eval_connections_);
      continue;
    }
    uint64_t id = next_id_++;
    auto conn = std::make_unique<Connection>();
    conn->kind = listener.kind;
    conn->fd = std::move(*fd);
    conn->accepted = std::chrono::steady_clock::now();
    auto watch = loop_.WatchFd(conn->fd.get(), event::Interest::Read(),
                               [this, id](event::Ready) { OnReadable(id); });
    if (!watch) {
      LOG_WARNING("watch: {}", watch.error().ToString());
      continue;
    }
    conn->watch = std::move(*watch);
    connections_.emplace(id, std::move(conn));
    if (eval) ++eval_connections_;
  }
}

PolicyServer::Connection* PolicyServer::Find(uint64_t id) {
  auto it = connections_.find(id);
  return it == connections_.end() ? nullptr : it->second.get();
}

void PolicyServer::OnReadable(uint64_t id) {
  Connection* conn = Find(id);
  if (conn == nullptr) return;
  size_t limit = conn->kind == Kind::kPolicySocket ? limits::kMaxPolicyRequest : kMaxEvalRequest;
  char buf[8192];
  for (;;) {
    auto n = sys::ReadSome(conn->fd.get(), std::as_writable_bytes(std::span(buf)));
    if (!n) {
      if (n.error().sys_errno == EAGAIN) return;
      LOG_DEBUG("read: {}", n.error().ToString());
      return Close(id);
    }
    if (*n == 0) return OnRequestComplete(id);
    if (conn->untrusted_in.size() + *n > limit) {
      LOG_WARNING("request too long, closing the connection");
      return Close(id);
    }
    conn->untrusted_in.append(buf, *n);
    if (conn->kind == Kind::kPolicySocket && policy::FindPolicyRequestEnd(conn->untrusted_in))
      return OnRequestComplete(id);
  }
}

void PolicyServer::OnRequestComplete(uint64_t id) {
  Connection* conn = Find(id);
  conn->watch.Reset();  // nothing more is read; the reply re-arms it if needed
  conn->reading = false;
  if (conn->kind != Kind::kPolicySocket) return HandleEvalRequest(id);
  auto request = policy::ParsePolicySocketRequest(conn->untrusted_in);
  if (!request) {
    LOG_WARNING("error parsing policy request: {}", SanitizeForLog(request.error().message));
    return Close(id);
  }
  HandlePolicyRequest(id, *request);
}

void PolicyServer::HandlePolicyRequest(uint64_t id, const policy::PolicySocketRequest& request) {
  store_.Acquire([this, id, request](const Snapshot& snapshot) { Decide(id, request, snapshot); });
}

void PolicyServer::Decide(uint64_t id, const policy::PolicySocketRequest& r,
                          const Snapshot& snapshot) {
  auto request = policy::MakeRequest(r.source, r.intended_target, r.service_and_arg,
                                     r.requested_source.value_or(""));
  policy::Decision decision;
  if (!snapshot.policy) {
    decision = policy::DenyForLoadError(snapshot.policy_error, request);
  } else if (!snapshot.system_info) {
    decision = policy::DenyForLoadError(
        Error{ErrorKind::kInternal, "system info unavailable: " + snapshot.system_info_error, 0},
        request);
  } else {
    decision = policy::Evaluate(*snapshot.policy, *snapshot.system_info, request);
  }
  const policy::SystemInfo& info = snapshot.system_info ? *snapshot.system_info : EmptySystemInfo();
  decision = policy::ApplyMode(decision, info, r.just_evaluate, r.assume_yes_for_ask);
  for (const auto& warning : decision.warnings) LOG_WARNING("{}", SanitizeForLog(warning));
  if (decision.verdict == policy::Verdict::kAsk) return StartAsk(id, decision, snapshot);
  Conclude(id, decision, snapshot.system_info, r.just_evaluate);
}

void PolicyServer::StartAsk(uint64_t id, const policy::Decision& ask, const Snapshot& snapshot) {
  auto info = snapshot.system_info;  // non-null: an ask needs a evaluated policy
  const policy::Domain* source = info->Find(ask.source);
  if (source == nullptr || !source->guivm) {
    LOG_INFO("no GuiVM to ask for {}", SanitizeForLog(ask.source));
    return Conclude(id, policy::DenyAsk(ask), info, false);
  }
  if (pending_asks_ >= kMaxPendingAsks) {
    LOG_WARNING("too many pending asks; refusing");
    return Conclude(id, policy::DenyAsk(ask), info, false);
  }
  nlohmann::json body = {{"source", ask.source},
                         {"service", ask.service},
                         {"argument", ask.argument},
                         {"targets", ask.targets},
                         {"default_target", ask.default_target.value_or("")},
                         {"icons", info->IconsForAsk()}};
  uint64_t call_id = next_id_++;
  auto done = [this, id, call_id, ask, info](Result<std::string> reply) {
    --pending_asks_;
    loop_.Post([this, call_id] { agent_calls_.erase(call_id); });
    if (!reply) LOG_WARNING("policy.Ask failed: {}", reply.error().ToString());
    std::string text = reply ? *reply : std::string();
    Conclude(id, policy::ApplyAgentReply(ask, text, *info), info, false);
  };
  auto call = AgentCall::Start(loop_, options_.agent, "policy.Ask", *source->guivm,
                               body.dump(-1, ' ', /*ensure_ascii=*/true), std::move(done));
  if (!call) {
    LOG_WARNING("cannot reach the policy agent of {}: {}", *source->guivm, call.error().ToString());
    return Conclude(id, policy::ApplyAgentReply(ask, "", *info), info, false);
  }
  ++pending_asks_;
  agent_calls_.emplace(call_id, std::move(*call));
  WatchForHangup(id, call_id);
}

void PolicyServer::WatchForHangup(uint64_t id, uint64_t call_id) {
  Connection* conn = Find(id);
  if (conn == nullptr) return;
  // Hang-up only: a full close of the client (EPOLLHUP) is reported; a client
  // that just half-closed still gets its answer.
  auto watch = loop_.WatchFd(
      conn->fd.get(), event::Interest::HangupOnly(), [this, id, call_id](event::Ready ready) {
        if (!ready.hangup && !ready.error) return;
        LOG_INFO("client left while the user was being asked; dropping the question");
        if (agent_calls_.erase(call_id) > 0) --pending_asks_;
        Close(id);
      });
  if (watch) conn->watch = std::move(*watch);
}

void PolicyServer::Conclude(uint64_t id, const policy::Decision& decision,
                            std::shared_ptr<const policy::SystemInfo> info, bool just_evaluate) {
  if (decision.verdict == policy::Verdict::kDeny)
    LOG_INFO("{} -> {} {}{}: denied: {}", SanitizeForLog(decision.source),
             SanitizeForLog(decision.raw_target), SanitizeForLog(decision.service),
             SanitizeForLog(decision.argument), SanitizeForLog(decision.reason));
  if (!just_evaluate && decision.notify && info) Notify(decision, *info);
  Reply(id, decision.answer);
}

void PolicyServer::Notify(const policy::Decision& decision, const policy::SystemInfo& info) {
  const policy::Domain* source = info.Find(decision.source);
  if (source == nullptr || !source->guivm) return;
  if (agent_calls_.size() >= kMaxAgentCalls) {
    LOG_WARNING("too many pending agent calls; dropping a notification");
    return;
  }
  bool allowed = decision.verdict == policy::Verdict::kAllow;
  nlohmann::json body = {{"resolution", allowed ? "allow" : "deny"},
                         {"service", decision.service},
                         {"argument", decision.argument},
                         {"source", decision.source},
                         {"target", allowed ? decision.target : decision.raw_target}};
  uint64_t call_id = next_id_++;
  auto done = [this, call_id](Result<std::string> reply) {
    if (!reply) LOG_WARNING("policy.Notify failed: {}", reply.error().ToString());
    loop_.Post([this, call_id] { agent_calls_.erase(call_id); });
  };
  auto call = AgentCall::Start(loop_, options_.agent, "policy.Notify", *source->guivm,
                               body.dump(-1, ' ', true), std::move(done));
  if (!call) {
    LOG_WARNING("policy.Notify to {} failed: {}", *source->guivm, call.error().ToString());
    return;
  }
  agent_calls_.emplace(call_id, std::move(*call));
}

void PolicyServer::HandleEvalRequest(uint64_t id) {
  Connection* conn = Find(id);
  bool gui = conn->kind == Kind::kEvalGui;
  auto request = DecodeEvalRequest(gui ? kEvalGuiService : kEvalSimpleService, conn->untrusted_in);
  if (!request) {
    LOG_WARNING("bad {} request: {}", gui ? kEvalGuiService : kEvalSimpleService,
                request.error().message);
    return Close(id);
  }
  store_.Acquire([this, id, gui, request = *request](const Snapshot& snapshot) {
    if (!snapshot.policy || !snapshot.system_info) return Reply(id, "result=deny\n");
    const policy::SystemInfo& info = *snapshot.system_info;
    if (gui) {
      std::string tag = "guivm-" + request.caller;
      if (!HasGuiTag(info, request.source, tag) || !HasGuiTag(info, request.target, tag)) {
        LOG_WARNING("policy.EvalGUI from {}: not the GuiVM of the queried qubes",
                    SanitizeForLog(request.caller));
        return Close(id);
      }
    }
    auto decision = policy::Evaluate(
        *snapshot.policy, info,
        policy::MakeRequest(request.source, request.target, request.service_and_arg));
    decision =
        policy::ApplyMode(decision, info, /*just_evaluate=*/true, /*assume_yes_for_ask=*/true);
    bool allowed = decision.verdict == policy::Verdict::kAllow;
    Reply(id, allowed ? "result=allow\n" : "result=deny\n");
  });
}

void PolicyServer::Reply(uint64_t id, std::string answer) {
  Connection* conn = Find(id);
  if (conn == nullptr) return;
  conn->watch.Reset();  // the hang-up watch of a pending ask
  conn->out = std::move(answer);
  conn->out_done = 0;
  OnWritable(id);
}

void PolicyServer::OnWritable(uint64_t id) {
  Connection* conn = Find(id);
  if (conn == nullptr) return;
  while (conn->out_done < conn->out.size()) {
    auto n = sys::WriteSome(conn->fd.get(),
                            sys::AsBytes(std::string_view(conn->out).substr(conn->out_done)));
    if (!n) {
      if (n.error().sys_errno != EAGAIN) return Close(id);  // the client left
      if (!conn->watch.active()) {
        auto watch = loop_.WatchFd(conn->fd.get(), event::Interest::Write(),
                                   [this, id](event::Ready) { OnWritable(id); });
        if (!watch) return Close(id);
        conn->watch = std::move(*watch);
      }
      return;
    }
    conn->out_done += *n;
  }
  Close(id);
}

void PolicyServer::Close(uint64_t id) {
  auto it = connections_.find(id);
  if (it == connections_.end()) return;
  if (it->second->kind != Kind::kPolicySocket) --eval_connections_;
  connections_.erase(it);
  trimmer_.Touch();
  for (auto& listener : listeners_) {
    if (!listener->paused) continue;
    listener->paused = false;
    (void)listener->watch.SetInterest(event::Interest::Read());
  }
}

}  // namespace qrexec::policy_tools
