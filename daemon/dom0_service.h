// Dom0ServiceRunner: runs the service of an allowed call whose target is dom0
// (qrexec-protocol.md §2.11, "Target is dom0"). The daemon has already
// allocated the data port and sent MSG_SERVICE_CONNECT{0, port, ident} to its
// agent; this spawns (fork + exec, through lib/exec, no shell) the helper
//   qrexec-client -d dom0 -w 5 --data-port=PORT -c IDENT,SOURCE,DOMID CMD
// with CMD = "QUBESRPC SERVICE+ARG SOURCE name|keyword TARGET". The helper
// joins the data vchan (client of SOURCE's domid, PORT), starts the service
// (lib/exec, rpc-config, wait-for-session) and runs the service side of the
// stream engine. Its exit status is only logged: the caller already got its
// connection and learns the service's exit code through the stream.
//
// At most kMaxDom0Services helpers run at once (one daemon serves one source
// domain, so this is the bound per source domain). A helper counts until it
// exits, and it exits only after its service did: the data port, which the
// source's agent may release whenever it likes, is no bound on what runs.
//
// Runs on the daemon's loop; every helper is reaped through its pidfd.
// Destroying the runner kills and reaps helpers still running.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "base/limits.h"
#include "event/loop.h"
#include "exec/child_process.h"

namespace qrexec::daemon {

// The protocol's port space: a source domain cannot have more calls with
// dom0 at once than there are data ports.
inline constexpr size_t kMaxDom0Services = limits::kDataPortCount;

struct Dom0Call {
  std::string ident;
  std::string source;    // name given to the service (QREXEC_REMOTE_DOMAIN)
  int source_domid = 0;  // the caller's VM (our VM)
  uint32_t port = 0;
  std::string service;           // "NAME+ARG"
  std::string requested_target;  // as normalized by policy ("@adminvm", "dom0", ...)
};

// "QUBESRPC NAME+ARG SOURCE keyword adminvm" / "... name dom0".
std::string FormatDom0Command(const Dom0Call& call);

class Dom0ServiceRunner {
 public:
  Dom0ServiceRunner(event::Loop& loop, std::string client_program, std::string socket_dir)
      : loop_(loop),
        client_program_(std::move(client_program)),
        socket_dir_(std::move(socket_dir)) {}

  // kInternal/kNotFound if the helper could not be started, kOverloaded when
  // kMaxDom0Services are running.
  Status Run(const Dom0Call& call);
  size_t running() const { return helpers_.size(); }
  bool full() const { return helpers_.size() >= kMaxDom0Services; }

 private:
  struct Helper {
    std::string ident;
    exec::ChildProcess child;
    event::FdWatch exit_watch;
  };
  void OnExit(uint64_t id);

  event::Loop& loop_;
  std::string client_program_;
  std::string socket_dir_;
  std::map<uint64_t, std::unique_ptr<Helper>> helpers_;
  uint64_t next_id_ = 1;
};

}  // namespace qrexec::daemon
