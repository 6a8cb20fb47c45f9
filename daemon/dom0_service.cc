#include "daemon/dom0_service.h"

#include "base/log.h"

extern char** environ;

namespace qrexec::daemon {

std::string FormatDom0Command(const Dom0Call& call) {
  std::string command = "QUBESRPC " + call.service + " " + call.source + " ";
  if (call.requested_target.starts_with("@"))
    command += "keyword " + call.requested_target.substr(1);
  else
    command += "name " + call.requested_target;
  return command;
}

Status Dom0ServiceRunner::Run(const Dom0Call& call) {
  if (full())
    return MakeError(ErrorKind::kOverloaded, fmt::format("{} dom0 services are running", helpers_.size()));
  exec::SpawnSpec spec;
  spec.path = client_program_;
  spec.argv = {client_program_,
               "-d",
               "dom0",
               "-w",
               "5",
               "--socket-dir=" + socket_dir_,
               "--data-port=" + std::to_string(call.port),
               "-c",
               call.ident + "," + call.source + "," + std::to_string(call.source_domid),
               FormatDom0Command(call)};
  for (char** env = environ; *env; ++env) spec.env.emplace_back(*env);
  spec.stdin_io = exec::Stdio::Null();
  spec.stdout_io = exec::Stdio::Null();
  spec.stderr_io = exec::Stdio::Inherit();  // the service's stderr goes to our log
  spec.new_session = false;
  auto child = exec::ChildProcess::Spawn(spec);
  if (!child) return tl::unexpected(child.error());
  uint64_t id = next_id_++;
  auto helper = std::make_unique<Helper>(Helper{call.ident, std::move(*child), {}});
  auto watch = loop_.WatchFd(helper->child.pidfd(), event::Interest::Read(),
                             [this, id](event::Ready) { OnExit(id); });
  if (!watch) return tl::unexpected(watch.error());  // ~ChildProcess kills and reaps
  helper->exit_watch = std::move(*watch);
  helpers_[id] = std::move(helper);
  return Ok();
}

void Dom0ServiceRunner::OnExit(uint64_t id) {
  auto it = helpers_.find(id);
  if (it == helpers_.end()) return;
  auto status = it->second->child.TryWait();
  if (status && !*status) return;
  int code = status ? exec::QrexecExitCode(**status) : -1;
  if (code != 0) LOG_DEBUG("dom0 service of {} ended with {}", it->second->ident, code);
  helpers_.erase(it);
}

}  // namespace qrexec::daemon
