// Shared helpers of the agent-side black-box tests: the test plays dom0 (and
// the remote end of data channels) over the socket backend of vchan, as
// Qubes' qrexec/tests/socket/agent.py does, against the real qrexec-agent,
// qrexec-client-vm and qrexec-fork-server binaries.
//
// Layout of a test directory: vchan.*.sock files at the top, services in
// rpc/, rpc-config files in config/, the agent's trigger socket agent.sock.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "base/unique_fd.h"
#include "harness.h"

namespace qrexec::harness::agent_side {

inline constexpr int kVmDomain = 42;
inline constexpr uint32_t kDataStdin = 0x190;
inline constexpr uint32_t kDataStdout = 0x191;
inline constexpr uint32_t kDataStderr = 0x192;
inline constexpr uint32_t kDataExitCode = 0x193;
inline constexpr uint32_t kExecCmdline = 0x200;
inline constexpr uint32_t kJustExec = 0x201;
inline constexpr uint32_t kServiceConnect = 0x202;
inline constexpr uint32_t kServiceRefused = 0x203;
inline constexpr uint32_t kConnectionTerminated = 0x211;
inline constexpr uint32_t kTriggerService4 = 0x213;
inline constexpr uint32_t kHello = 0x300;

// The name of the user running the tests (the agent only runs services as
// that user when it is not root; as root it switches to the named user).
std::string CurrentUser();
// "<current user>:QUBESRPC <service> <source>"
std::string RpcCommand(const std::string& service, const std::string& source = "src");

// The environment every VM-side binary gets: socket backend in `dir`, own
// domain `domain`, services and configs in dir/rpc and dir/config.
std::map<std::string, std::string> VmEnvironment(const TempDir& dir, int domain = kVmDomain);

// A qrexec-agent under test, started with --no-fork-server (unless
// `extra_args` say otherwise), --no-pam-session (`--pam-session` in `args`
// turns it back on) and --agent-socket=<dir>/agent.sock.
class AgentUnderTest {
 public:
  explicit AgentUnderTest(const TempDir& dir, int domain = kVmDomain,
                          std::map<std::string, std::string> extra_env = {},
                          std::vector<std::string> args = {"--no-fork-server"});
  // Connects as dom0 to the control vchan and exchanges hellos (asserting
  // the agent's HELLO{4} came first).
  void ConnectDom0(uint32_t dom0_version = 4);
  int control() const { return control_.get(); }
  void CloseControl() { control_.reset(); }
  Process& process() { return *process_; }
  std::string agent_socket() const { return dir_ / ("agent." + std::to_string(domain_) + ".sock"); }
  int domain() const { return domain_; }

 private:
  const TempDir& dir_;
  int domain_;
  std::optional<Process> process_;
  UniqueFd control_;
};

// What the service side of a data channel sent.
struct ServiceOutput {
  std::string out;
  std::string err;
  std::optional<int> exit_code;
  std::vector<uint32_t> types;       // message types in arrival order
  std::vector<size_t> lengths;       // their lengths
  bool closed_without_exit = false;  // EOF before EXIT_CODE
};
// Reads data messages until EXIT_CODE (or EOF / time-out).
ServiceOutput CollectServiceOutput(int vchan, milliseconds timeout = kDefaultTimeout);

// dom0 -> VM call: listens as the data vchan server (0, domain, port), sends
// `type` with `command` on the control channel, accepts the agent handler's
// connection and exchanges hellos. Returns the data vchan.
UniqueFd StartCall(AgentUnderTest& agent, const TempDir& dir, const std::string& command,
                   uint32_t type = kExecCmdline, int port = 513, uint32_t version = 4);
// Sends `input` as STDIN (and the EOF when `eof`); false when the service
// side already closed the vchan.
bool SendStdin(int vchan, const std::string& input, bool eof = true);
// Runs a whole dom0 -> VM call and collects its output.
ServiceOutput RunCall(AgentUnderTest& agent, const TempDir& dir, const std::string& command,
                      const std::string& input = "", int port = 513);
// Expects MSG_CONNECTION_TERMINATED{domain, port} next on the control channel.
void ExpectTerminated(int control, uint32_t domain, uint32_t port);

}  // namespace qrexec::harness::agent_side
