#include "agent_call.h"

#include <fmt/core.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "base/sys.h"

namespace qrexec::policy_tools {
namespace {

// Runs qrexec-client with stdin and stdout on one end of a socketpair; the
// child is reaped by the kernel (the daemon ignores SIGCHLD).
Result<UniqueFd> SpawnQrexecClient(const AgentRoute& route, std::string_view service,
                                   std::string_view guivm) {
  auto pair = sys::SocketPair(/*nonblocking=*/false);
  if (!pair) return tl::unexpected(pair.error());
  std::string guivm_arg(guivm);
  std::string command = fmt::format("DEFAULT:QUBESRPC {} dom0", service);
  std::vector<char*> argv = {const_cast<char*>(route.qrexec_client.c_str()),
                             const_cast<char*>("-d"), guivm_arg.data(), command.data(), nullptr};
  int child_fd = pair->second.get();
  pid_t pid = ::fork();
  if (pid < 0) return ErrnoError("fork");
  if (pid == 0) {
    // Child: async-signal-safe calls only.
    ::dup2(child_fd, 0);
    ::dup2(child_fd, 1);
    int keep[] = {0, 1, 2};
    sys::CloseFdsExcept(keep);
    ::signal(SIGPIPE, SIG_DFL);
    ::signal(SIGCHLD, SIG_DFL);
    sigset_t none;
    ::sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  if (auto status = sys::SetNonBlocking(pair->first.get(), true); !status)
    return tl::unexpected(status.error());
  return std::move(pair->first);
}

}  // namespace

Result<std::unique_ptr<AgentCall>> AgentCall::Start(event::Loop& loop, const AgentRoute& route,
                                                    std::string_view service,
                                                    std::string_view guivm, std::string_view json,
                                                    Done done) {
  bool direct = guivm == "dom0" || route.direct_for_all;
  Result<UniqueFd> fd;
  std::string request;
  if (direct) {
    std::string path =
        route.agent_socket.empty() ? fmt::format("/etc/qubes-rpc/{}", service) : route.agent_socket;
    fd = sys::UnixConnect(path, /*nonblocking=*/true);
    request = fmt::format("{} dom0 name dom0", service);
    request.push_back('\0');
  } else {
    fd = SpawnQrexecClient(route, service, guivm);
  }
  if (!fd) return tl::unexpected(fd.error());
  request.append(json);
  std::unique_ptr<AgentCall> call(
      new AgentCall(std::move(*fd), std::move(request), std::move(done)));
  AgentCall* self = call.get();
  auto watch = loop.WatchFd(call->fd_.get(), event::Interest::Write(),
                            [self](event::Ready) { self->OnReady(); });
  if (!watch) return tl::unexpected(watch.error());
  call->watch_ = std::move(*watch);
  return call;
}

void AgentCall::OnReady() {
  if (written_ < request_.size()) {
    auto n = sys::WriteSome(fd_.get(), sys::AsBytes(std::string_view(request_).substr(written_)));
    if (!n) {
      if (n.error().sys_errno == EAGAIN) return;
      return Finish(tl::unexpected(n.error()));
    }
    written_ += *n;
    if (written_ < request_.size()) return;
    ::shutdown(fd_.get(), SHUT_WR);
    if (auto status = watch_.SetInterest(event::Interest::Read()); !status)
      return Finish(tl::unexpected(status.error()));
    return;
  }
  char buf[1024];
  auto n = sys::ReadSome(fd_.get(), std::as_writable_bytes(std::span(buf)));
  if (!n) {
    if (n.error().sys_errno == EAGAIN) return;
    return Finish(tl::unexpected(n.error()));
  }
  if (*n == 0) return Finish(std::move(reply_));
  if (reply_.size() + *n > kMaxAgentReply)
    return Finish(MakeError(ErrorKind::kOverloaded, "policy agent reply too long"));
  reply_.append(buf, *n);
}

void AgentCall::Finish(Result<std::string> result) {
  watch_.Reset();
  fd_.reset();
  if (done_) std::exchange(done_, nullptr)(std::move(result));
}

}  // namespace qrexec::policy_tools
