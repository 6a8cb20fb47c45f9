#include "agent/warm_handlers.h"

#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <optional>

#include "agent/call_handler.h"
#include "agent/fork_server.h"
#include "base/log.h"
#include "base/sys.h"

namespace qrexec::agent {
namespace {

constexpr auto kWriteTimeout = std::chrono::seconds(1);
constexpr auto kReadTimeout = std::chrono::seconds(10);
constexpr std::byte kCallDone{1};
constexpr std::byte kCallFollows{2};

// A SIGUSR1 still pending from the previous call's service (it stays
// blocked between calls) must not switch the next call to one socket.
void DropPendingSigusr1() {
  sigset_t usr1;
  sigemptyset(&usr1);
  sigaddset(&usr1, SIGUSR1);
  const struct timespec now {};
  while (::sigtimedwait(&usr1, nullptr, &now) == SIGUSR1) {
  }
}

// Services of earlier calls were reaped by their stream engine; anything
// else that was ours and has exited (a service's leftover) is reaped here.
void ReapStrayChildren() {
  while (::waitpid(-1, nullptr, WNOHANG) > 0) {
  }
}

}  // namespace

int ServeWarmCalls(int owner, const exec::ExecContext& ctx, exec::UserPrefix prefix) {
  while (true) {
    // Readable: a call arrived, or EOF (RecvWithFd then reads nothing).
    if (!sys::WaitReadable(owner, sys::Deadline::AfterSeconds(WarmHandlers::kIdleSeconds)))
      return 0;
    std::byte marker[1];
    auto announced = sys::RecvWithFd(owner, marker);
    // EOF: the owner retired us or went away.
    if (!announced || announced->first != 1 || marker[0] != kCallFollows) return 0;
    UniqueFd held = std::move(announced->second);
    auto request = ReadForkRequest(owner, sys::Deadline::After(kReadTimeout));
    if (!request) return 0;
    DropPendingSigusr1();  // whatever arrived while we were idle
    CallPlan call = PlanCall(request->type, {request->connect_domain, request->connect_port},
                             request->command, prefix, ctx);
    (void)RunCallHandler(call, ctx);
    ReapStrayChildren();
    // "Done" before the held descriptor closes: whoever sees its EOF (the
    // agent, then a new call) finds this handler idle again.
    const std::byte done[1] = {kCallDone};
    bool told = !!sys::WriteAll(owner, done, sys::Deadline::After(kWriteTimeout));
    held.reset();
    if (!told) return 0;
  }
}

struct WarmHandlers::Handler {
  pid_t pid = 0;
  UniqueFd socket;  // non-blocking
  event::FdWatch watch;
  event::ChildWatch exit_watch;
  std::optional<uint64_t> call;  // the call it runs, if any
};

WarmHandlers::WarmHandlers(event::Loop& loop, const exec::ExecContext& ctx, exec::UserPrefix prefix,
                           CallDone on_done)
    : loop_(loop), ctx_(ctx), prefix_(prefix), on_done_(std::move(on_done)) {}

WarmHandlers::~WarmHandlers() = default;

bool WarmHandlers::Run(uint64_t call_id, const proto::CmdInfo& call, int hold_fd) {
  auto encoded = proto::EncodeCmdInfo(call);
  if (!encoded) return false;
  Handler* handler = nullptr;
  if (idle_.empty()) CollectFinished();
  if (!idle_.empty()) {
    handler = handlers_.at(idle_.back()).get();
    idle_.pop_back();
  } else {
    handler = Spawn();
    if (handler == nullptr) return false;
  }
  // An idle handler has read everything sent before, so the socket buffer
  // is empty and a request (at most ~66 KiB) goes out at once.
  const std::byte marker[1] = {kCallFollows};
  Status announced = hold_fd >= 0 ? sys::SendWithFd(handler->socket.get(), marker, hold_fd)
                                  : sys::WriteAll(handler->socket.get(), marker,
                                                  sys::Deadline::After(kWriteTimeout));
  if (!announced ||
      !sys::WriteAll(handler->socket.get(), *encoded, sys::Deadline::After(kWriteTimeout))) {
    LOG_WARNING("warm call handler {} did not take a call; forking one instead", handler->pid);
    Retire(*handler);
    return false;
  }
  handler->call = call_id;
  return true;
}

WarmHandlers::Handler* WarmHandlers::Spawn() {
  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) < 0) {
    LOG_ERROR("{}", ErrnoError("socketpair").value().ToString());
    return nullptr;
  }
  UniqueFd ours(fds[0]), theirs(fds[1]);
  pid_t pid = ::fork();
  if (pid < 0) {
    LOG_ERROR("cannot fork a warm call handler: {}", ErrnoError("fork").value().ToString());
    return nullptr;
  }
  if (pid == 0) {
    const int keep[] = {theirs.get()};
    ForgetParentLoop(keep);
    ::_exit(ServeWarmCalls(theirs.get(), ctx_, prefix_));
  }
  theirs.reset();
  auto handler = std::make_unique<Handler>();
  handler->pid = pid;
  handler->socket = std::move(ours);
  auto exit_watch = loop_.WatchChild(pid, [this, pid](int) { OnExit(pid); });
  if (!exit_watch || !sys::SetNonBlocking(handler->socket.get(), true)) {
    // Without a way to see it end, it must not get calls; it exits on the
    // EOF and init reaps it once we are gone.
    LOG_ERROR("cannot watch warm call handler {}", pid);
    ::kill(pid, SIGKILL);
    (void)::waitpid(pid, nullptr, 0);
    return nullptr;
  }
  handler->exit_watch = std::move(*exit_watch);
  auto watch = loop_.WatchFd(handler->socket.get(), event::Interest::Read(),
                             [this, pid](event::Ready) { OnReadable(pid); });
  if (!watch) {
    LOG_ERROR("cannot watch warm call handler {}: {}", pid, watch.error().ToString());
    Retire(*handler);
    handlers_[pid] = std::move(handler);
    return nullptr;
  }
  handler->watch = std::move(*watch);
  Handler* raw = handler.get();
  handlers_[pid] = std::move(handler);
  return raw;
}

void WarmHandlers::OnReadable(pid_t pid) {
  auto it = handlers_.find(pid);
  if (it == handlers_.end()) return;
  Handler& handler = *it->second;
  std::byte buffer[16];
  auto n = sys::ReadSome(handler.socket.get(), buffer);
  if (!n && n.error().sys_errno == EAGAIN) return;
  if (!n || *n == 0) {
    // The handler is going away; OnExit ends its call, if any.
    handler.watch.Reset();
    handler.socket.reset();
    return;
  }
  if (!handler.call) {
    LOG_ERROR("warm call handler {} reported a call it did not have", pid);
    Retire(handler);
    return;
  }
  uint64_t call = *handler.call;
  handler.call.reset();
  if (idle_.size() >= kMaxIdle) {
    Retire(handler);
  } else {
    idle_.push_back(pid);
  }
  on_done_(call);
}

// A handler may have reported "done" in the same loop iteration that
// brought the new call; reading those reports first saves a fork.
// One poll() over the busy handlers' sockets, so that a burst with many
// calls in flight costs one system call per new call, not one per handler.
void WarmHandlers::CollectFinished() {
  std::vector<struct pollfd> busy;
  std::vector<pid_t> pids;
  for (const auto& [pid, handler] : handlers_) {
    if (!handler->call || !handler->socket.valid()) continue;
    busy.push_back({handler->socket.get(), POLLIN, 0});
    pids.push_back(pid);
  }
  if (busy.empty() || ::poll(busy.data(), busy.size(), 0) <= 0) return;
  for (size_t i = 0; i < busy.size(); ++i)
    if (busy[i].revents != 0) OnReadable(pids[i]);
}

void WarmHandlers::OnExit(pid_t pid) {
  auto it = handlers_.find(pid);
  if (it == handlers_.end()) return;
  std::optional<uint64_t> call = it->second->call;
  RemoveFromIdle(pid);
  handlers_.erase(it);
  if (call) on_done_(*call);
}

void WarmHandlers::Retire(Handler& handler) {
  RemoveFromIdle(handler.pid);
  handler.watch.Reset();
  handler.socket.reset();  // EOF: it exits; OnExit forgets it
}

void WarmHandlers::RemoveFromIdle(pid_t pid) {
  idle_.erase(std::remove(idle_.begin(), idle_.end(), pid), idle_.end());
}

}  // namespace qrexec::agent
