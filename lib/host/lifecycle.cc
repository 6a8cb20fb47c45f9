// The host's side of "a domain's processes end together" (docs/architecture.md,
// "Lifecycle"): which domain a disposable was made for, what happens to a
// disposable when that domain stops, and what happens to a domain whose
// qrexec-daemon exits.
#include "base/log.h"
#include "host/host.h"
#include "host/host_internal.h"

namespace qrexec::host {

std::string Host::DomainOfDaemonProcess(pid_t pid) const {
  // The daemon normally asks itself (TargetConnector); a process it started
  // (a dom0 service, qrexec-policy-exec executing a call) counts for the
  // same domain. A process reparented elsewhere is simply not
  // attributed; the walk cannot name a wrong domain, since the asking
  // process is alive (it waits for our answer) and so are its ancestors.
  constexpr int kMaxDepth = 16;
  for (int depth = 0; pid > 1 && depth < kMaxDepth; ++depth) {
    for (const auto& domain : domains_)
      if (domain->daemon.valid() && domain->daemon.pid() == pid) return domain->config.name;
    auto parent = ParentOf(pid);
    if (!parent) break;
    pid = *parent;
  }
  return {};
}

void Host::DestroyDisposablesMadeFor(const std::string& source) {
  std::vector<std::string> owned;
  for (const auto& domain : domains_)
    if (domain->dynamic && domain->made_for == source) owned.push_back(domain->config.name);
  // StopDomain destroys each (and, in turn, those made for it).
  for (const auto& name : owned)
    StopDomain(name, "the domain it was made for (" + source + ") stopped");
}

void Host::OnDaemonExit(const std::string& name) {
  Domain* domain = Find(name);
  if (domain == nullptr) return;
  domain->daemon_watch.Reset();
  auto status = domain->daemon.TryReap();
  int code = status ? ExitCodeOf(*status) : -1;
  if (domain->state == PowerState::kStarting) {
    LOG_WARNING("qrexec-daemon of {} exited ({}) while it was starting", name, code);
    FinishStart(name, MakeError(ErrorKind::kInternal,
                                "qrexec-daemon of " + name + " exited while starting"));
    return;
  }
  if (domain->state != PowerState::kRunning || shut_down_) return;
  // Without its daemon nothing reaches the domain and its calls fail: in
  // Qubes terms it is broken. Stopping it (and with it the disposables made
  // for it) shows the truth and frees everything; `start` brings it back.
  LOG_ERROR("qrexec-daemon of {} exited ({}); stopping {}", name, code, name);
  StopDomain(name, fmt::format("its qrexec-daemon exited ({})", code));
}

}  // namespace qrexec::host
