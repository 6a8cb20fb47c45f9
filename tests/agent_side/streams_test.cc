// Whole VM -> VM calls between real binaries, the test playing dom0 only:
// qrexec-client-vm in domain 42 (with its agent) calls a service run by the
// agent of domain 43. Modeled on Qubes' TestAgentStreams; checks byte-exact
// streams of several sizes in both directions.
#include <fcntl.h>
#include <gtest/gtest.h>

#include <thread>

#include "agent_fixture.h"
#include "base/sys.h"

namespace qrexec::harness::agent_side {
namespace {

constexpr int kCallerDomain = 42;
constexpr int kServiceDomain = 43;

class TwoVms : public ::testing::Test {
 protected:
  void SetUp() override {
    caller_.emplace(dir_, kCallerDomain);
    service_.emplace(dir_, kServiceDomain);
    caller_->ConnectDom0();
    service_->ConnectDom0();
  }
  void TearDown() override {
    if (dom0_.joinable()) dom0_.join();
  }

  // dom0's part: relays the caller's trigger as an exec request to the
  // service VM and connects the caller.
  void RelayOneCall(int port = 514) {
    dom0_ = std::thread([this, port] {
      auto trigger = RecvMessage(caller_->control());
      if (!trigger || trigger->type != kTriggerService4) return;
      std::string service = trigger->body.substr(160);
      service.pop_back();  // NUL
      std::string ident = trigger->body.substr(128, 32);
      std::string command = RpcCommand(service, "caller-vm");
      (void)SendMessage(service_->control(), kExecCmdline,
                        ExecParamsBody(kCallerDomain, static_cast<uint32_t>(port), command));
      (void)SendMessage(caller_->control(), kServiceConnect,
                        U32(kServiceDomain) + U32(static_cast<uint32_t>(port)) + ident);
    });
  }

  SpawnOptions ClientOptions(std::vector<std::string> args) {
    SpawnOptions options;
    options.argv = {BinPath("qrexec-client-vm"), "--agent-socket=" + caller_->agent_socket()};
    options.argv.insert(options.argv.end(), args.begin(), args.end());
    options.env = VmEnvironment(dir_, kCallerDomain);
    options.unset_env = {"QREXEC_BROKER_SOCKET"};
    return options;
  }

  TempDir dir_;
  std::optional<AgentUnderTest> caller_, service_;
  std::thread dom0_;
};

TEST_F(TwoVms, SmallCallEndToEnd) {
  WriteScript(dir_ / "rpc/test.Echo", "echo \"from $QREXEC_REMOTE_DOMAIN: $(cat)\"; exit 6\n");
  RelayOneCall();
  auto result = RunProgram(ClientOptions({"vm-b", "test.Echo+"}), "hi");
  EXPECT_EQ(result.out, "from caller-vm: hi\n");
  EXPECT_EQ(result.exit_code, 6);
  dom0_.join();
  // Both agents report the end of the connection to dom0.
  ExpectTerminated(service_->control(), kCallerDomain, 514);
  ExpectTerminated(caller_->control(), kServiceDomain, 514);
}

// Writes `size` bytes of a position-dependent pattern to `path`.
void WritePattern(const std::string& path, size_t size, unsigned seed) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  ASSERT_TRUE(fd.valid());
  std::string block(1 << 20, '\0');
  for (size_t done = 0; done < size; done += block.size()) {
    for (size_t i = 0; i < block.size(); ++i)
      block[i] = static_cast<char>(((done + i) * 131 + (done + i) / 65521 + seed) & 0xff);
    size_t n = std::min(block.size(), size - done);
    ASSERT_TRUE(sys::WriteAll(fd.get(), std::string_view(block.data(), n)));
  }
}

bool SameFiles(const std::string& a, const std::string& b) {
  SpawnOptions cmp;
  cmp.argv = {"/usr/bin/cmp", "-s", a, b};
  return RunProgram(cmp, "", std::chrono::minutes(2)).exit_code == 0;
}

class StreamSizes : public TwoVms, public ::testing::WithParamInterface<size_t> {};

TEST_P(StreamSizes, StreamsAreByteExactInBothDirections) {
  size_t size = GetParam();
  // The service echoes its input and then appends its own pattern file.
  WritePattern(dir_ / "to-service", size, 1);
  WritePattern(dir_ / "from-service", size, 2);
  WriteScript(dir_ / "rpc/test.Cat",
              "cat > \"$0.received\"; cat \"$(dirname \"$0\")/../from-service\"\n");
  RelayOneCall();
  UniqueFd in(::open((dir_ / "to-service").c_str(), O_RDONLY | O_CLOEXEC));
  UniqueFd out(::open((dir_ / "got").c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  auto options = ClientOptions({"vm-b", "test.Cat+"});
  options.stdin_fd = in.get();
  options.stdout_fd = out.get();
  auto result = RunProgram(options, "", std::chrono::minutes(5));
  EXPECT_EQ(result.exit_code, 0) << result.err;
  EXPECT_TRUE(SameFiles(dir_ / "to-service", dir_ / "rpc/test.Cat.received"));
  EXPECT_TRUE(SameFiles(dir_ / "from-service", dir_ / "got"));
}

INSTANTIATE_TEST_SUITE_P(Sizes, StreamSizes,
                         ::testing::Values(size_t{0}, size_t{1}, size_t{65535}, size_t{65536},
                                           size_t{65537}, size_t{256} << 20));

TEST_F(TwoVms, RefusedCallEndsTheClientWith126) {
  dom0_ = std::thread([this] {
    auto trigger = RecvMessage(caller_->control());
    if (!trigger) return;
    (void)SendMessage(caller_->control(), kServiceRefused, trigger->body.substr(128, 32));
  });
  auto result = RunProgram(ClientOptions({"vm-b", "test.Denied"}));
  EXPECT_EQ(result.exit_code, 126);
  EXPECT_NE(result.err.find("Request refused"), std::string::npos);
}

}  // namespace
}  // namespace qrexec::harness::agent_side
