#include "agent/fork_server.h"

#include <pwd.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>

#include "agent/call_handler.h"
#include "agent/warm_handlers.h"
#include "base/escape_filter.h"
#include "base/log.h"
#include "base/sys.h"
#include "event/loop.h"
#include "exec/command.h"
#include "exec/service.h"
#include "proto/messages.h"

namespace qrexec::agent {
namespace {

constexpr auto kRequestTimeout = std::chrono::seconds(10);

CallPlan PlanRequest(const proto::CmdInfo& request, const exec::ExecContext& ctx) {
  return PlanCall(request.type, {request.connect_domain, request.connect_port}, request.command,
                  exec::UserPrefix::kAbsent, ctx);
}

// The serving loop: each accepted connection carries one request. An
// MSG_EXEC_CMDLINE call goes to a warm handler (warm_handlers.h), which
// holds the connection until the call is over; anything else, or a call no
// warm handler could take, gets a handler forked for it that inherits the
// connection. Either way the agent sees EOF when the call ends.
class Server {
 public:
  Server(event::Loop& loop, int listener)
      : loop_(loop),
        listener_(listener),
        warm_(loop, ctx_, exec::UserPrefix::kAbsent, [](uint64_t) {}) {
    ctx_.load_rpc_config = false;
  }

  Status Start() {
    auto watch =
        loop_.WatchFd(listener_, event::Interest::Read(), [this](event::Ready) { OnAcceptable(); });
    if (!watch) return tl::unexpected(watch.error());
    listen_watch_ = std::move(*watch);
    return Ok();
  }

 private:
  void OnAcceptable() {
    auto connection = sys::Accept(listener_);
    if (!connection) {
      if (connection.error().sys_errno != EAGAIN)
        LOG_ERROR("accept: {}", connection.error().ToString());
      return;
    }
    if (auto served = Serve(std::move(*connection)); !served)
      LOG_ERROR("request refused: {}", SanitizeForLog(served.error().ToString()));
  }

  // Reads and checks the request (with a short deadline, so a stuck client
  // cannot stall the others for long) and starts the call.
  Status Serve(UniqueFd connection) {
    auto request = ReadForkRequest(connection.get(), sys::Deadline::After(kRequestTimeout));
    if (!request) return tl::unexpected(request.error());
    if (request->type == proto::ExecType::kExecCmdline &&
        warm_.Run(next_id_++, *request, connection.get()))
      return Ok();
    CallPlan call = PlanRequest(*request, ctx_);
    int keep[] = {connection.get()};
    auto pid = ForkCallHandler(call, ctx_, keep);
    if (!pid) return tl::unexpected(pid.error());
    auto watch = loop_.WatchChild(*pid, [this, child = *pid](int) { forked_.erase(child); });
    if (watch) forked_[*pid] = std::move(*watch);
    return Ok();
  }

  event::Loop& loop_;
  int listener_;
  exec::ExecContext ctx_;
  event::FdWatch listen_watch_;
  std::map<pid_t, event::ChildWatch> forked_;  // reaped through the loop
  uint64_t next_id_ = 1;
  WarmHandlers warm_;  // last: destroyed first
};

}  // namespace

Result<proto::CmdInfo> ReadForkRequest(int fd, const sys::Deadline& deadline) {
  proto::Bytes bytes(proto::kCmdInfoSize);
  if (auto got = sys::ReadExact(fd, bytes, deadline); !got) return tl::unexpected(got.error());
  auto length = proto::ForkServerCommandLength(
      std::span<const std::byte, proto::kCmdInfoSize>(bytes.data(), proto::kCmdInfoSize));
  if (!length) return tl::unexpected(length.error());
  bytes.resize(proto::kCmdInfoSize + *length);
  if (auto got = sys::ReadExact(fd, std::span(bytes).subspan(proto::kCmdInfoSize), deadline); !got)
    return tl::unexpected(got.error());
  auto decoded = proto::DecodeForkServerRequest(bytes);
  if (!decoded) return tl::unexpected(decoded.error().ToError());
  return std::move(*decoded);
}

// Lives here rather than in options.cc so that qrexec-client-vm, linked
// statically, does not pull in getpwuid.
Parsed<ForkServerOptions> ParseForkServerArgs(int argc, char** argv) {
  ForkServerOptions options;
  if (argc > 2) {
    std::fprintf(stderr, "usage: %s [socket path]\n", argv[0]);
    return ExitNow{1};
  }
  if (argc == 2) {
    options.socket_path = argv[1];
  } else {
    const char* user = std::getenv("USER");
    std::string name = user != nullptr ? user : "";
    if (name.empty()) {
      struct passwd* pw = ::getpwuid(::geteuid());
      if (pw != nullptr) name = pw->pw_name;
    }
    options.socket_path = ForkServerSocketPath(kDefaultForkServerSocketFormat, name);
  }
  return options;
}

int RunForkServer(const ForkServerOptions& options) {
  auto listener = sys::UnixListen(options.socket_path);
  if (!listener) {
    LOG_ERROR("cannot listen on {}: {}", options.socket_path, listener.error().ToString());
    return 1;
  }
  const char* foreground = std::getenv(kForkServerForegroundEnv);
  if (foreground == nullptr || foreground[0] == '\0') {
    pid_t pid = ::fork();
    if (pid < 0) {
      LOG_ERROR("fork: {}", std::strerror(errno));
      return 1;
    }
    if (pid > 0) return 0;
    ::setsid();  // leave the starting terminal's process group
  }
  ::signal(SIGPIPE, SIG_IGN);
  if (auto nonblocking = sys::SetNonBlocking(listener->get(), true); !nonblocking) {
    LOG_ERROR("{}", nonblocking.error().ToString());
    return 1;
  }
  event::Loop loop;
  Server server(loop, listener->get());
  if (auto started = server.Start(); !started) {
    LOG_ERROR("{}", started.error().ToString());
    return 1;
  }
  auto ran = loop.Run();
  if (!ran) LOG_ERROR("{}", ran.error().ToString());
  return 1;
}

}  // namespace qrexec::agent
