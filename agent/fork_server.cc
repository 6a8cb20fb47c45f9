#include "agent/fork_server.h"

#include <pwd.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "agent/call_handler.h"
#include "base/escape_filter.h"
#include "base/log.h"
#include "base/sys.h"
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

Status ServeForkRequest(UniqueFd connection) {
  auto request = ReadForkRequest(connection.get(), sys::Deadline::After(kRequestTimeout));
  if (!request) return tl::unexpected(request.error());
  exec::ExecContext ctx;
  ctx.load_rpc_config = false;
  CallPlan call = PlanRequest(*request, ctx);
  int keep[] = {connection.get()};
  auto pid = ForkCallHandler(call, ctx, keep);
  if (!pid) return tl::unexpected(pid.error());
  return Ok();
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
  // Handlers are reaped by the kernel; each handler restores SIGCHLD before
  // it starts its service.
  ::signal(SIGCHLD, SIG_IGN);
  ::signal(SIGPIPE, SIG_IGN);
  for (;;) {
    auto connection = sys::Accept(listener->get());
    if (!connection) {
      LOG_ERROR("accept: {}", connection.error().ToString());
      continue;
    }
    if (auto served = ServeForkRequest(std::move(*connection)); !served)
      LOG_ERROR("request refused: {}", SanitizeForLog(served.error().ToString()));
  }
}

}  // namespace qrexec::agent
