// qrexec-fork-server (qrexec-protocol.md §1.6, §2.10), directly and through
// the agent.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <thread>
#include <vector>

#include "agent_fixture.h"
#include "base/sys.h"

namespace qrexec::harness::agent_side {
namespace {

class ForkServer : public ::testing::Test {
 protected:
  void StartForkServer() {
    SpawnOptions options;
    options.argv = {BinPath("qrexec-fork-server"), socket_path()};
    options.env = VmEnvironment(dir_);
    options.env["QREXEC_FORK_SERVER_FOREGROUND"] = "1";
    options.unset_env = {"QREXEC_BROKER_SOCKET"};
    options.stdin_mode = Stdio::kNull;
    options.stdout_mode = Stdio::kNull;
    options.stderr_mode = Stdio::kInherit;
    auto process = Process::Spawn(options);
    ASSERT_TRUE(process);
    server_.emplace(std::move(*process));
  }
  std::string socket_path() const { return dir_ / ("fs." + CurrentUser() + ".sock"); }

  // The 16-byte qrexec_cmd_info + command + NUL.
  static std::string Request(uint32_t type, uint32_t domain, uint32_t port,
                             const std::string& cmd) {
    return U32(type) + U32(domain) + U32(port) + U32(static_cast<uint32_t>(cmd.size() + 1)) + cmd +
           '\0';
  }

  TempDir dir_;
  std::optional<Process> server_;
};

TEST_F(ForkServer, MoreThanOneArgumentIsAUsageErrorWithStatusOne) {
  SpawnOptions options;
  options.argv = {BinPath("qrexec-fork-server"), "a", "b"};
  EXPECT_EQ(RunProgram(options).exit_code, 1);
}

TEST_F(ForkServer, RunsARequestAndClosesTheConnectionWhenTheCallEnds) {
  WriteScript(dir_ / "rpc/test.Echo", "echo \"$1 $QREXEC_REMOTE_DOMAIN $(cat)\"; exit 2\n");
  StartForkServer();
  auto listener = VchanListen(dir_.path(), 0, kVmDomain, 520);
  ASSERT_TRUE(listener);
  auto conn = ConnectUnixRetry(socket_path());
  ASSERT_TRUE(conn);
  ASSERT_TRUE(SendRaw(conn->get(), Request(kExecCmdline, 0, 520, "QUBESRPC test.Echo+arg src")));
  auto vchan = VchanAccept(listener->get(), dir_.path(), 0, kVmDomain, 520);
  ASSERT_TRUE(vchan);
  ASSERT_TRUE(Handshake(vchan->get(), 4));
  EXPECT_TRUE(SendStdin(vchan->get(), "input"));
  auto output = CollectServiceOutput(vchan->get());
  EXPECT_EQ(output.out, "arg src input\n");
  EXPECT_EQ(output.exit_code, 2);
  EXPECT_TRUE(WaitForEof(conn->get()));
}

// Warm handlers (agent/warm_handlers.h): the second call runs in the process
// that ran the first, and each connection still reaches EOF at its end.
TEST_F(ForkServer, ConsecutiveCallsRunInOneWarmHandler) {
  WriteScript(dir_ / "rpc/test.Pid", "echo \"$QREXEC_AGENT_PID $PPID\"\n");
  StartForkServer();
  std::vector<std::string> outputs;
  for (uint32_t port : {521u, 523u}) {
    auto listener = VchanListen(dir_.path(), 0, kVmDomain, port);
    ASSERT_TRUE(listener);
    auto conn = ConnectUnixRetry(socket_path());
    ASSERT_TRUE(conn);
    ASSERT_TRUE(SendRaw(conn->get(), Request(kExecCmdline, 0, port, "QUBESRPC test.Pid src")));
    auto vchan = VchanAccept(listener->get(), dir_.path(), 0, kVmDomain, port);
    ASSERT_TRUE(vchan);
    ASSERT_TRUE(Handshake(vchan->get(), 4));
    auto output = CollectServiceOutput(vchan->get());  // the service reads no stdin
    EXPECT_EQ(output.exit_code, 0);
    EXPECT_TRUE(WaitForEof(conn->get()));
    outputs.push_back(output.out);
  }
  ASSERT_EQ(outputs.size(), 2u);
  std::istringstream first(outputs[0]);
  pid_t agent_pid = 0, parent = 0;
  first >> agent_pid >> parent;
  EXPECT_GT(agent_pid, 0);
  EXPECT_EQ(agent_pid, parent) << "QREXEC_AGENT_PID names the handler";
  EXPECT_EQ(outputs[1], outputs[0]) << "the same handler ran both calls";
}

TEST_F(ForkServer, InvalidRequestsAreClosed) {
  StartForkServer();
  for (std::string bad : {U32(0x999) + U32(0) + U32(513) + U32(2) + std::string("x\0", 2),
                          U32(kExecCmdline) + U32(0) + U32(513) + U32(0),
                          U32(kExecCmdline) + U32(0) + U32(513) + U32(3) + std::string("a\0b", 3),
                          U32(kExecCmdline) + U32(0) + U32(513) + U32(0x7fffffff)}) {
    auto conn = ConnectUnixRetry(socket_path());
    ASSERT_TRUE(conn);
    ASSERT_TRUE(SendRaw(conn->get(), bad));
    EXPECT_TRUE(WaitForEof(conn->get()));
  }
  EXPECT_TRUE(server_->Running());
}

TEST_F(ForkServer, AgentHandsCallsToTheForkServerOfTheUser) {
  // The service reports the parent of its handler: the fork server.
  WriteScript(dir_ / "rpc/test.Parent", "cut -d' ' -f4 /proc/$PPID/stat\n");
  StartForkServer();
  ASSERT_TRUE(ConnectUnixRetry(socket_path()));  // it is listening
  AgentUnderTest agent(dir_, kVmDomain, {}, {"--fork-server-socket=" + (dir_ / "fs.%s.sock")});
  agent.ConnectDom0();
  auto output = RunCall(agent, dir_, RpcCommand("test.Parent+"));
  EXPECT_EQ(output.out, std::to_string(server_->pid()) + "\n");
  EXPECT_EQ(output.exit_code, 0);
  ExpectTerminated(agent.control(), 0, 513);
}

TEST_F(ForkServer, AgentFallsBackWhenNoForkServerListens) {
  WriteScript(dir_ / "rpc/test.Echo", "echo fallback\n");
  AgentUnderTest agent(dir_, kVmDomain, {}, {"--fork-server-socket=" + (dir_ / "fs.%s.sock")});
  agent.ConnectDom0();
  auto output = RunCall(agent, dir_, RpcCommand("test.Echo+"));
  EXPECT_EQ(output.out, "fallback\n");
  EXPECT_EQ(output.exit_code, 0);
}

TEST_F(ForkServer, AgentDoesNotUseTheForkServerForSocketOnlyOptions) {
  WriteScript(dir_ / "rpc/test.Parent", "cut -d' ' -f4 /proc/$PPID/stat\n");
  WriteFile(dir_ / "config/test.Parent", "skip-service-descriptor = true\n");
  StartForkServer();
  ASSERT_TRUE(ConnectUnixRetry(socket_path()));
  AgentUnderTest agent(dir_, kVmDomain, {}, {"--fork-server-socket=" + (dir_ / "fs.%s.sock")});
  agent.ConnectDom0();
  auto output = RunCall(agent, dir_, RpcCommand("test.Parent+"));
  EXPECT_EQ(output.out, std::to_string(agent.process().pid()) + "\n");
}

}  // namespace
}  // namespace qrexec::harness::agent_side
