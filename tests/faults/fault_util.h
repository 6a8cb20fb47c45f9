// Helpers for the fault-injection suite: reading /proc (descriptors, memory,
// process states), bounded waits, and the MiniQubes set-up shared by every
// fault test.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "mini_qubes.h"

namespace qrexec::faults {

using harness::MiniQubes;
using harness::Process;
using harness::RunResult;
using harness::SpawnOptions;
using std::chrono::milliseconds;

// The bound the issue sets for the other ends to exit after a kill.
inline constexpr milliseconds kFiveSeconds{5000};

// Open descriptors of a process (-1 if it is gone).
int CountFds(pid_t pid);
// Resident set size in KiB (-1 if it is gone).
long RssKiB(pid_t pid);
// The parent of a process (-1 if it is gone).
pid_t ParentPid(pid_t pid);
// The state letter from /proc/PID/stat ('\0' if it is gone).
char ProcState(pid_t pid);
// Gone, or a zombie.
bool Dead(pid_t pid);
// Live (not zombie) children of `parent`.
std::vector<pid_t> ChildrenOf(pid_t parent);
// A call handler is done with its call: it exited, or it is a warm handler
// back to idle (agent/warm_handlers.h): no children, and no descriptors but
// 0-2 and its socket to the agent.
bool CallHandlerDone(pid_t handler);
// Descriptors an agent holds per warm call handler (its socket and pidfd).
inline constexpr int kAgentFdsPerWarmHandler = 2;
// Zombies ("Z") whose parent is one of `parents`, as "pid(ppid) comm".
std::vector<std::string> ZombieChildrenOf(const std::vector<pid_t>& parents);
// Polls `done` every 10 ms until it holds or the time-out passes.
bool WaitUntil(const std::function<bool()>& done, milliseconds timeout);
// Reads one line (without the '\n') from a descriptor within the time-out.
std::optional<std::string> ReadLine(int fd, milliseconds timeout);
// Reads whatever is available until EOF or the time-out.
std::string ReadAll(int fd, milliseconds timeout);
// The pid written to a file by a service (waits for the file).
pid_t ReadPidFile(const std::string& path, milliseconds timeout);
// The seed for a random test: $QREXEC_FAULT_SEED or the clock; printed so a
// failure can be reproduced.
uint64_t TestSeed();

// A call held open by the demo.Hold service (see FaultTest::StartHeldCall).
struct HeldCall {
  std::unique_ptr<Process> client;
  pid_t service = -1;
  pid_t handler = -1;  // the agent's per-call child, the service's parent
};

// Domains: work (1) calls; vault (2) and other (3) serve; mal (4) is the one
// whose agent a test replaces with a fake. Policy allows the demo services
// between them, denies demo.Denied. The daemons' fallback policy program is
// a wrapper running qrexec-policy-exec on the same policy directory.
class FaultTest : public ::testing::Test {
 protected:
  void SetUp() override;
  void TearDown() override;

  // A call from `source` that runs demo.Hold in `target` and waits until the
  // service printed "started"; the service then waits for one line on its
  // stdin, prints "got LINE" and exits 3.
  HeldCall StartHeldCall(const std::string& source, const std::string& target);
  // The same for a call started by `options` (qrexec-client in dom0, or a
  // call to @adminvm): `where` names the domain whose demo.Hold runs ("dom0"
  // for dom0) and `grandparent` the process expected above the handler.
  HeldCall StartHeld(const SpawnOptions& options, const std::string& where, pid_t grandparent);
  // Kills the held call's caller (SIGKILL) and expects it reaped, its service
  // and handler gone within 5 s, everything back to idle and calls working.
  void ExpectKillingTheCallerEndsTheCall(HeldCall& call, const std::string& context);
  // A quick call of demo.Echo; returns its result.
  RunResult Echo(const std::string& source, const std::string& target, const std::string& input);
  // Echo calls work in every direction between the running test domains.
  void ExpectCallsWork(const std::string& context);
  // Waits until the descriptor counts of the dom0 processes and agents that
  // are still the same processes are back to their idle values, and no
  // zombies hang below our daemons or agents.
  void ExpectIdleAndNoZombies(const std::string& context);
  // Re-reads the idle descriptor counts (after a component was restarted).
  void RecordIdle();
  std::vector<pid_t> OurPids();
  std::string Log(const std::string& name);  // logs/<name>.log

  std::unique_ptr<MiniQubes> qubes_;
  std::map<pid_t, int> idle_fds_;
  std::string fallback_;  // the fallback policy program wrapper
};

}  // namespace qrexec::faults
