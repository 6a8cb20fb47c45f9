// qrexec-client-vm as a component (qrexec-protocol.md §1.5, §2.10, §2.11):
// asks the local agent for a call, waits for dom0's verdict, then becomes
// the data vchan server and runs the caller side of the stream engine with
// our stdio, the stdin socket, or a local program.
//
// Blocking; owns the process while it runs (the stream gets its own loop).
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "agent/options.h"
#include "base/result.h"
#include "base/unique_fd.h"
#include "proto/messages.h"
#include "vchan/transport.h"

namespace qrexec::agent {

// Exit statuses of qrexec-client-vm besides the remote/local codes.
inline constexpr int kClientExitLocalError = 1;
inline constexpr int kClientExitUsage = 2;
inline constexpr int kClientExitRefused = 126;
// Exit status of a local program that could not be started (Qubes' child
// exits -1); the call goes on and this becomes the local status.
inline constexpr int kLocalProgramFailedStatus = 255;

// Seconds to wait for the service side to join the data vchan.
inline constexpr int kClientVchanTimeoutSeconds = 120;

// Runs the whole call and returns the process exit status.
int RunClientVm(const ClientVmOptions& options);

// The trigger request written to the agent: header + trigger_service_params4
// (request id "SOCKET") + service + NUL. kMalformed when a field cannot be
// encoded (a service name over 65000 bytes, NUL bytes).
Result<proto::Bytes> BuildTriggerRequest(const ClientVmOptions& options);

// The agent's yes to a trigger request: where to connect, and the data
// channel it offered for the caller when the transport wants that
// (vchan::Transport::OfferToHandOver; invalid otherwise).
struct AgentVerdict {
  proto::ExecParams params;
  UniqueFd offer;
};

// Reads the agent's answer: 8 raw bytes, the first part possibly carrying
// one descriptor (SCM_RIGHTS); nullopt on EOF before any byte (refused).
Result<std::optional<AgentVerdict>> ReadAgentVerdict(int agent_fd);

// The caller's end of the data channel: the handed-over offer if there is
// one, else a fresh offer of its own.
Result<std::unique_ptr<vchan::PendingServer>> OfferDataChannel(vchan::Transport& transport,
                                                               AgentVerdict& verdict);

// The local program's side of the call: its stdin/stdout are socketpairs
// whose other ends are returned; SAVED_FD_0/1 (and 2 with PASS_LOCAL_STDERR)
// and QREXEC_AGENT_PID are set in its environment.
struct LocalProgram {
  pid_t pid = -1;
  UniqueFd to_program;    // its stdin
  UniqueFd from_program;  // its stdout
};
// Starts `argv` (argv[0] is the path; the program sees its basename as
// argv[0]). An exec failure is logged; the child then exits
// kLocalProgramFailedStatus and is returned like a started one. Errors only
// for what fails before fork (socketpairs, descriptors).
Result<LocalProgram> StartLocalProgram(const std::vector<std::string>& argv);

}  // namespace qrexec::agent
