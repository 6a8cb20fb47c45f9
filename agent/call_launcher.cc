#include "agent/call_launcher.h"

#include <cerrno>

#include "agent/options.h"
#include "base/escape_filter.h"
#include "base/limits.h"
#include "base/log.h"
#include "base/names.h"
#include "base/sys.h"
#include "exec/command.h"

namespace qrexec::agent {

// One call in progress: either a handler child or a fork-server connection.
struct CallLauncher::Running {
  proto::ExecParams peer;
  event::ChildWatch child_watch;  // handler child
  UniqueFd fork_server;           // or: connection to the fork server
  event::FdWatch fork_server_watch;
};

CallLauncher::CallLauncher(event::Loop& loop, ConnectionBudget& budget, Settings settings,
                           Handlers handlers)
    : loop_(loop),
      budget_(budget),
      settings_(std::move(settings)),
      handlers_(std::move(handlers)),
      warm_(loop, ctx_, exec::UserPrefix::kPresent, [this](uint64_t id) { Finish(id); }) {
  ctx_.pam_session = settings_.pam_session;
}

CallLauncher::~CallLauncher() = default;

void CallLauncher::Launch(const proto::ExecRequest& request) {
  LOG_CALL_STAGE(fmt::format("port={}", request.connect_port), "request_received");
  CallPlan call = Plan(request);
  auto* plan = std::get_if<exec::ServicePlan>(&call.service);
  if (plan != nullptr && plan->NeedsWaitForSession()) {
    StartWaiting(std::move(call));
    return;
  }
  Dispatch(std::move(call));
}

CallPlan CallLauncher::Plan(const proto::ExecRequest& request) const {
  return PlanCall(request.type, {request.connect_domain, request.connect_port}, request.command,
                  exec::UserPrefix::kPresent, ctx_);
}

void CallLauncher::Dispatch(CallPlan call) {
  if (!budget_.TryAcquire()) {
    LOG_ERROR("too many connections; dropping a request from dom0");
    ReportTerminated(call.peer);
    return;
  }
  if (TryForkServer(call)) return;
  if (TryWarmHandler(call)) return;
  ForkHandler(call);
}

bool CallLauncher::TryForkServer(const CallPlan& call) {
  const auto* plan = std::get_if<exec::ServicePlan>(&call.service);
  if (!settings_.use_fork_server || plan == nullptr || !plan->MayUseForkServer()) return false;
  auto socket = HandToForkServer(call, *plan);
  if (!socket) return false;
  auto running = std::make_unique<Running>();
  running->peer = call.peer;
  running->fork_server = std::move(*socket);
  uint64_t id = next_id_++;
  auto watch = loop_.WatchFd(running->fork_server.get(), event::Interest::Read(),
                             [this, id](event::Ready) { OnForkServerReadable(id); });
  if (!watch) {
    LOG_ERROR("cannot watch the fork-server connection: {}", watch.error().ToString());
    ReportTerminated(call.peer);
    budget_.Release();
    return true;
  }
  running->fork_server_watch = std::move(*watch);
  running_[id] = std::move(running);
  return true;
}

std::optional<UniqueFd> CallLauncher::HandToForkServer(const CallPlan& call,
                                                       const exec::ServicePlan& plan) const {
  std::string path = ForkServerSocketPath(settings_.fork_server_socket_format, plan.effective_user);
  auto socket = sys::UnixConnect(path);
  if (!socket) {
    int err = socket.error().sys_errno;
    if (err != ENOENT && err != ECONNREFUSED)
      LOG_WARNING("fork server at {}: {}", path, socket.error().ToString());
    return std::nullopt;
  }
  proto::CmdInfo info{call.type, call.peer.connect_domain, call.peer.connect_port,
                      plan.command.body};
  auto encoded = proto::EncodeCmdInfo(info);
  if (!encoded ||
      !sys::WriteAll(socket->get(), *encoded, sys::Deadline::After(std::chrono::seconds(5)))) {
    LOG_WARNING("cannot hand the call to the fork server; running it ourselves");
    return std::nullopt;
  }
  return std::move(*socket);
}

// The fork server never writes; readable means EOF (the call ended) or an
// error.
void CallLauncher::OnForkServerReadable(uint64_t id) {
  auto it = running_.find(id);
  if (it == running_.end()) return;
  std::byte buffer[64];
  auto n = sys::ReadSome(it->second->fork_server.get(), buffer);
  if (n && *n > 0) return;
  if (!n && n.error().sys_errno == EAGAIN) return;
  Finish(id);
}

bool CallLauncher::TryWarmHandler(const CallPlan& call) {
  if (!settings_.use_warm_handlers || call.type != proto::ExecType::kExecCmdline ||
      !std::holds_alternative<exec::ServicePlan>(call.service))
    return false;
  uint64_t id = next_id_++;
  if (!warm_.Run(id, {call.type, call.peer.connect_domain, call.peer.connect_port, call.command}))
    return false;
  auto running = std::make_unique<Running>();
  running->peer = call.peer;
  running_[id] = std::move(running);
  return true;
}

void CallLauncher::ForkHandler(const CallPlan& call) {
  auto pid = ForkCallHandler(call, ctx_);
  if (!pid) {
    LOG_ERROR("cannot start a call handler: {}", pid.error().ToString());
    ReportTerminated(call.peer);
    budget_.Release();
    return;
  }
  uint64_t id = next_id_++;
  auto watch = loop_.WatchChild(*pid, [this, id](int) { Finish(id); });
  auto running = std::make_unique<Running>();
  running->peer = call.peer;
  if (!watch) {
    // Should not happen for our own fresh child; do not lose the slot forever.
    LOG_ERROR("cannot watch the call handler: {}", watch.error().ToString());
    ReportTerminated(call.peer);
    budget_.Release();
    return;
  }
  running->child_watch = std::move(*watch);
  running_[id] = std::move(running);
}

void CallLauncher::Finish(uint64_t id) {
  auto it = running_.find(id);
  if (it == running_.end()) return;
  proto::ExecParams peer = it->second->peer;
  running_.erase(it);
  ReportTerminated(peer);
  budget_.Release();
}

void CallLauncher::ReportTerminated(const proto::ExecParams& peer) {
  handlers_.on_terminated({peer.connect_domain, peer.connect_port});
}

void CallLauncher::StartWaiting(CallPlan call) {
  if (waiting_.size() >= static_cast<size_t>(limits::kMaxWaitingForSession)) {
    LOG_ERROR("too many requests waiting for the session; failing one");
    call.service = exec::kExitProblem;
    Dispatch(std::move(call));
    return;
  }
  const auto& plan = std::get<exec::ServicePlan>(call.service);
  std::string user = plan.effective_user;
  std::string source = plan.command.rpc ? plan.command.rpc->source : std::string();
  waiting_.push_back(std::move(call));
  if (session_waiter_) return;
  auto child = exec::StartWaitForSession(ctx_, user, source);
  if (!child) {
    if (child.error().kind != ErrorKind::kNotFound)
      LOG_ERROR("cannot start qubes.WaitForSession: {}", child.error().ToString());
    OnSessionReady();
    return;
  }
  session_waiter_ = std::make_unique<exec::ChildProcess>(std::move(*child));
  if (session_waiter_->pidfd() < 0) {  // no pidfd_open: wait here
    OnSessionReady();
    return;
  }
  auto watch = loop_.WatchFd(session_waiter_->pidfd(), event::Interest::Read(),
                             [this](event::Ready) { OnSessionReady(); });
  if (!watch) {
    LOG_ERROR("cannot watch qubes.WaitForSession: {}", watch.error().ToString());
    return;  // the call stays queued until the next waiter finishes
  }
  session_watch_ = std::move(*watch);
}

void CallLauncher::OnSessionReady() {
  session_watch_.Reset();
  if (session_waiter_) {
    (void)session_waiter_->Wait();
    session_waiter_.reset();
  }
  std::deque<CallPlan> ready;
  ready.swap(waiting_);
  for (auto& call : ready) Dispatch(std::move(call));
}

}  // namespace qrexec::agent
