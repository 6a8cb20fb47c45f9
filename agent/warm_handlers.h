// Warm call handlers: handler processes that serve one call after another.
//
// A handler forked afresh for every call (call_handler.h) spends most of its
// CPU time on being a new process: on a VM, where page faults are dear, the
// child faults in every page of code and heap it touches, and its exit tears
// them down again (about 60 faults and 0.5 ms of CPU per call on the 2-vCPU
// bench machine, see bench/README.md). A warm handler is forked once and
// then loops: it takes a call from the agent, runs it exactly as a forked
// handler does (PlanCall + RunCallHandler: same code, same files, same
// vchan), reports that it is done, and waits for the next call.
//
// Who uses them: the agent for the MSG_EXEC_CMDLINE calls it runs itself,
// and the fork server for the calls the agent hands it. MSG_JUST_EXEC (its
// process outlives the handler) and calls that could not be planned keep
// their fork per call.
//
// Between the owner (agent or fork server) and one warm handler: a
// SOCK_STREAM socketpair. The owner writes one byte, carrying (SCM_RIGHTS)
// the descriptor the handler must hold for the call if there is one (the
// fork server passes its connection from the agent: the agent sees EOF on it
// when the call is over), then the call in the fork server's format
// (qrexec_cmd_info + command, with or without the "user:" prefix as the
// owner's PlanCall expects). The handler writes one byte when the call is
// over (exit code sent, service reaped, passed descriptor closed). EOF on
// either side ends the handler. A handler that dies in a call ends that
// call, as a forked handler's exit does.
//
// Between calls a handler drops pending SIGUSR1s (a late signal from the
// previous call's service must not switch the next call) and reaps stray
// children. QREXEC_AGENT_PID stays the handler's pid, as with forked
// handlers. Handlers run as the agent's user, like forked handlers, so
// reusing one for calls from different domains crosses no privilege line.
//
// Sizing: at most kMaxIdle handlers wait idle (extra ones are retired when
// their call ends); an idle handler also exits by itself after kIdleSeconds.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <vector>

#include "base/unique_fd.h"
#include "event/loop.h"
#include "exec/command.h"
#include "exec/service.h"
#include "proto/messages.h"

namespace qrexec::agent {

class WarmHandlers {
 public:
  static constexpr size_t kMaxIdle = 4;
  static constexpr int kIdleSeconds = 60;

  using CallDone = std::function<void(uint64_t call_id)>;

  // `on_done` runs on the loop when a call given to Run() is over (the
  // handler reported it, or died). Handlers plan calls with `prefix`.
  WarmHandlers(event::Loop& loop, const exec::ExecContext& ctx, exec::UserPrefix prefix,
               CallDone on_done);
  // Closes every handler's socket: idle handlers exit at once, busy ones
  // when their call ends. Does not wait for them.
  ~WarmHandlers();
  WarmHandlers(const WarmHandlers&) = delete;
  WarmHandlers& operator=(const WarmHandlers&) = delete;

  // Hands the call (and `hold_fd`, if >= 0, which the handler keeps open
  // until the call is over) to an idle handler, forking a new one when none
  // is idle (after reading the "done" reports already waiting: `on_done` may
  // run from inside Run). False when no handler could take it (fork or write
  // failed): the caller then forks a plain handler.
  bool Run(uint64_t call_id, const proto::CmdInfo& call, int hold_fd = -1);

  size_t idle_count() const { return idle_.size(); }
  size_t size() const { return handlers_.size(); }

 private:
  struct Handler;

  Handler* Spawn();
  void CollectFinished();
  void OnReadable(pid_t pid);
  void OnExit(pid_t pid);
  void Retire(Handler& handler);
  void RemoveFromIdle(pid_t pid);

  event::Loop& loop_;
  const exec::ExecContext& ctx_;
  exec::UserPrefix prefix_;
  CallDone on_done_;
  std::map<pid_t, std::unique_ptr<Handler>> handlers_;
  std::vector<pid_t> idle_;  // most recently used last: it is the warmest
};

// The warm handler's side: serves calls from `owner` until EOF, an error or
// kIdleSeconds without a call; returns the process exit status (0).
int ServeWarmCalls(int owner, const exec::ExecContext& ctx, exec::UserPrefix prefix);

}  // namespace qrexec::agent
