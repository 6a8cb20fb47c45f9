#include "agent_fixture.h"

#include <gtest/gtest.h>
#include <pwd.h>
#include <signal.h>
#include <unistd.h>

namespace qrexec::harness::agent_side {
namespace {

// The tests write to sockets whose peer may already be gone (a service that
// exits without reading its input): that must be EPIPE, not a dead test.
const bool kSigpipeIgnored = [] {
  ::signal(SIGPIPE, SIG_IGN);
  return true;
}();

}  // namespace

std::string CurrentUser() {
  struct passwd* pw = ::getpwuid(::geteuid());
  return pw != nullptr ? pw->pw_name : "root";
}

std::string RpcCommand(const std::string& service, const std::string& source) {
  return CurrentUser() + ":QUBESRPC " + service + " " + source;
}

std::map<std::string, std::string> VmEnvironment(const TempDir& dir, int domain) {
  return {{"VCHAN_SOCKET_DIR", dir.path()},
          {"VCHAN_DOMAIN", std::to_string(domain)},
          {"QREXEC_SERVICE_PATH", dir / "rpc"},
          {"QUBES_RPC_CONFIG_PATH", dir / "config"}};
}

AgentUnderTest::AgentUnderTest(const TempDir& dir, int domain,
                               std::map<std::string, std::string> extra_env,
                               std::vector<std::string> args)
    : dir_(dir), domain_(domain) {
  SpawnOptions options;
  // Direct exec unless a test asks for the PAM session (--pam-session in
  // `args`, which comes later and wins): the tests that switch users are
  // about users, and the system's /etc/pam.d is none of their business.
  options.argv = {BinPath("qrexec-agent"), "--agent-socket=" + agent_socket(), "--no-pam-session"};
  options.argv.insert(options.argv.end(), args.begin(), args.end());
  options.env = VmEnvironment(dir, domain);
  for (auto& [k, v] : extra_env) options.env[k] = v;
  options.unset_env = {"QREXEC_BROKER_SOCKET", "NOTIFY_SOCKET"};
  options.stdin_mode = Stdio::kNull;
  options.stdout_mode = Stdio::kNull;
  options.stderr_mode = Stdio::kInherit;
  auto process = Process::Spawn(options);
  if (!process) throw std::runtime_error("cannot spawn qrexec-agent");
  process_.emplace(std::move(*process));
}

void AgentUnderTest::ConnectDom0(uint32_t dom0_version) {
  auto control = VchanConnect(dir_.path(), domain_, 0, 512);
  ASSERT_TRUE(control) << control.error().ToString();
  control_ = std::move(*control);
  auto hello = RecvMessage(control_.get());
  ASSERT_TRUE(hello) << hello.error().ToString();
  ASSERT_EQ(hello->type, kHello);
  ASSERT_EQ(hello->body, HelloBody(4));
  ASSERT_TRUE(SendMessage(control_.get(), kHello, HelloBody(dom0_version)));
}

ServiceOutput CollectServiceOutput(int vchan, milliseconds timeout) {
  ServiceOutput output;
  for (;;) {
    auto message = RecvMessage(vchan, timeout);
    if (!message) {
      output.closed_without_exit = true;
      return output;
    }
    output.types.push_back(message->type);
    output.lengths.push_back(message->body.size());
    if (message->type == kDataStdout) output.out += message->body;
    if (message->type == kDataStderr) output.err += message->body;
    if (message->type == kDataExitCode) {
      if (message->body.size() >= 4) output.exit_code = static_cast<int>(ReadU32(message->body));
      return output;
    }
  }
}

UniqueFd StartCall(AgentUnderTest& agent, const TempDir& dir, const std::string& command,
                   uint32_t type, int port, uint32_t version) {
  auto listener = VchanListen(dir.path(), 0, agent.domain(), port);
  EXPECT_TRUE(listener) << listener.error().ToString();
  if (!listener) return UniqueFd();
  EXPECT_TRUE(
      SendMessage(agent.control(), type, ExecParamsBody(0, static_cast<uint32_t>(port), command)));
  auto vchan = VchanAccept(listener->get(), dir.path(), 0, agent.domain(), port);
  EXPECT_TRUE(vchan) << vchan.error().ToString();
  if (!vchan) return UniqueFd();
  auto peer_version = Handshake(vchan->get(), version);
  EXPECT_TRUE(peer_version) << peer_version.error().ToString();
  if (peer_version) {
    EXPECT_EQ(*peer_version, 4u);  // the agent always announces its own
  }
  return std::move(*vchan);
}

bool SendStdin(int vchan, const std::string& input, bool eof) {
  // A service may legitimately end (and close the vchan) before reading all
  // of its input, so a failed write is reported, not asserted.
  for (size_t offset = 0; offset < input.size(); offset += 65536) {
    if (!SendMessage(vchan, kDataStdin, input.substr(offset, 65536))) return false;
  }
  return !eof || SendMessage(vchan, kDataStdin, "");
}

ServiceOutput RunCall(AgentUnderTest& agent, const TempDir& dir, const std::string& command,
                      const std::string& input, int port) {
  UniqueFd vchan = StartCall(agent, dir, command, kExecCmdline, port);
  if (!vchan.valid()) return ServiceOutput{.closed_without_exit = true};
  SendStdin(vchan.get(), input);
  return CollectServiceOutput(vchan.get());
}

void ExpectTerminated(int control, uint32_t domain, uint32_t port) {
  auto message = RecvMessage(control);
  ASSERT_TRUE(message) << message.error().ToString();
  EXPECT_EQ(message->type, kConnectionTerminated);
  EXPECT_EQ(message->body, U32(domain) + U32(port));
}

}  // namespace qrexec::harness::agent_side
