// qrexec-policy-exec's ask and notify flow against a fake policy agent: the
// direct socket route (GUI qube dom0) and the qrexec-client route.
#include <sys/socket.h>
#include <sys/stat.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "base/sys.h"
#include "policy/test_util.h"

namespace qrexec::policy {
namespace {

using nlohmann::json;
using testing::SharedConformanceDir;
using testing::TempDir;

// A system info where test-vm1's GUI qube is `guivm`.
std::string WriteSystemInfo(const TempDir& dir, const std::string& guivm) {
  std::ifstream in(SharedConformanceDir() + "/system-info.json");
  json info = json::parse(in);
  info["domains"]["test-vm1"]["guivm"] = guivm;
  return dir.Write("system-info.json", info.dump());
}

// Serves `count` agent connections, recording each request.
class FakeAgent {
 public:
  FakeAgent(const std::string& path, std::vector<std::string> replies) {
    auto fd = sys::UnixListen(path);
    EXPECT_TRUE(fd.has_value());
    if (fd) listen_ = std::move(*fd);
    thread_ = std::thread([this, replies] {
      for (const std::string& reply : replies) {
        auto conn = sys::Accept(listen_.get());
        if (!conn) return;
        auto req = sys::ReadToEof(conn->get(), 1 << 20, sys::Deadline::After(std::chrono::seconds(20)));
        requests_.push_back(req ? *req : "<error>");
        (void)sys::WriteAll(conn->get(), reply);
      }
    });
  }
  void Join() {
    if (thread_.joinable()) thread_.join();
  }
  ~FakeAgent() { Join(); }
  const std::vector<std::string>& requests() const { return requests_; }

 private:
  UniqueFd listen_;
  std::thread thread_;
  std::vector<std::string> requests_;
};

std::string RunExec(const std::vector<std::string>& args, int* status) {
  std::string cmd = std::string(QREXEC_BIN_DIR) + "/qrexec-policy-exec";
  for (const std::string& a : args) cmd += " '" + a + "'";
  FILE* p = ::popen(cmd.c_str(), "r");
  std::string out;
  char buf[4096];
  size_t n;
  while (p && (n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  int st = p ? ::pclose(p) : -1;
  *status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return out;
}

std::pair<std::string, json> SplitFramed(const std::string& request) {
  size_t nul = request.find('\0');
  if (nul == std::string::npos) return {request, json()};
  return {request.substr(0, nul), json::parse(request.substr(nul + 1), nullptr, false)};
}

TEST(PolicyExecAgent, AskGoesToTheDom0AgentSocketAndItsChoiceIsApplied) {
  TempDir dir;
  std::string info = WriteSystemInfo(dir, "dom0");
  dir.Write("p/30-user.policy", "* * test-vm1 @anyvm ask default_target=test-vm2 notify=yes\n");
  std::string sock = dir.path() + "/agent.sock";
  FakeAgent agent(sock, {"allow:test-vm3", ""});
  int status = 0;
  std::string out = RunExec({"--path", dir.path() + "/p", "--system-info", info, "--agent-socket",
                             sock, "test-vm1", "test-vm2", "test.Service+arg"},
                            &status);
  agent.Join();
  EXPECT_EQ(status, 0);
  EXPECT_EQ(out, "user=DEFAULT\nresult=allow\ntarget=test-vm3\n"
                 "target_uuid=uuid:fa6d56e8-a89d-4106-aa62-22e172a43c8b\nautostart=True\n"
                 "requested_target=test-vm2\n");
  ASSERT_EQ(agent.requests().size(), 2u);
  auto [header, ask] = SplitFramed(agent.requests()[0]);
  EXPECT_EQ(header, "policy.Ask dom0 name dom0");
  ASSERT_TRUE(ask.is_object()) << agent.requests()[0];
  EXPECT_EQ(ask["source"], "test-vm1");
  EXPECT_EQ(ask["service"], "test.Service");
  EXPECT_EQ(ask["argument"], "+arg");
  EXPECT_EQ(ask["default_target"], "test-vm2");
  EXPECT_EQ(ask["targets"].size(), 18u);
  EXPECT_EQ(ask["icons"]["test-vm2"], "appvm-red");
  EXPECT_EQ(ask["icons"]["@dispvm:default-dvm"], "dispvm-red");
  auto [nheader, notify] = SplitFramed(agent.requests()[1]);
  EXPECT_EQ(nheader, "policy.Notify dom0 name dom0");
  EXPECT_EQ(notify, json({{"resolution", "allow"}, {"service", "test.Service"},
                          {"argument", "+arg"}, {"source", "test-vm1"}, {"target", "test-vm3"}}));
}

TEST(PolicyExecAgent, AUserDenyOrAnUnreachableAgentRefuses) {
  TempDir dir;
  std::string info = WriteSystemInfo(dir, "dom0");
  dir.Write("p/30-user.policy", "* * test-vm1 @anyvm ask\n");
  std::string sock = dir.path() + "/agent.sock";
  {
    FakeAgent agent(sock, {"deny"});
    int status = 0;
    EXPECT_EQ(RunExec({"--path", dir.path() + "/p", "--system-info", info, "--agent-socket", sock,
                       "test-vm1", "test-vm2", "x"},
                      &status),
              "result=deny\n");
    EXPECT_EQ(status, 1);
    agent.Join();
    EXPECT_EQ(agent.requests().size(), 1u);  // notify is off for a user's deny
  }
  int status = 0;
  EXPECT_EQ(RunExec({"--path", dir.path() + "/p", "--system-info", info, "--agent-socket",
                     dir.path() + "/none.sock", "test-vm1", "test-vm2", "x"},
                    &status),
            "result=deny\n");
  EXPECT_EQ(status, 1);
}

TEST(PolicyExecAgent, OtherGuiQubesAreReachedThroughQrexecClient) {
  TempDir dir;
  std::string info = WriteSystemInfo(dir, "sys-gui");
  dir.Write("p/30-user.policy", "* * test-vm1 @anyvm ask\n");
  std::string log = dir.path() + "/client.log";
  std::string client = dir.Write("fake-qrexec-client",
                                 "#!/bin/sh\necho \"$@\" >> " + log + "\ncat >> " + log +
                                     "\necho >> " + log + "\nprintf allow:test-vm2\n");
  ::chmod(client.c_str(), 0755);
  int status = 0;
  std::string out = RunExec({"--path", dir.path() + "/p", "--system-info", info,
                             "--qrexec-client", client, "test-vm1", "test-vm2", "x"},
                            &status);
  EXPECT_EQ(status, 0) << out;
  std::ifstream in(log);
  std::string first;
  std::getline(in, first);
  EXPECT_EQ(first, "-d sys-gui DEFAULT:QUBESRPC policy.Ask dom0");
}

}  // namespace
}  // namespace qrexec::policy

namespace qrexec::policy {
namespace {

TEST(PolicyExecFiveArguments, AnAllowedCallStartsTheTargetAndRunsQrexecClient) {
  TempDir dir;
  dir.Write("p/30-user.policy",
            "* * test-vm1 test-vm3 allow user=alice\n* * test-vm1 @dispvm allow\n");
  std::string log = dir.path() + "/client.log";
  std::string client = dir.Write("fake-qrexec-client",
                                 "#!/bin/sh\necho \"$@\" >> " + log + "\nexit 7\n");
  ::chmod(client.c_str(), 0755);
  std::string qubesd = dir.path() + "/qubesd.sock";
  std::string ok = std::string(1, '0') + '\0';
  FakeAgent fake_qubesd(qubesd, {ok, ok + "disp123", ok});
  std::vector<std::string> base = {"--path", dir.path() + "/p", "--system-info",
                                   SharedConformanceDir() + "/system-info.json",
                                   "--qubesd-socket", qubesd, "--qrexec-client", client};
  auto with = [&](std::vector<std::string> extra) {
    std::vector<std::string> a = base;
    a.insert(a.end(), extra.begin(), extra.end());
    int status = 0;
    RunExec(a, &status);
    return status;
  };
  EXPECT_EQ(with({"12", "test-vm1", "test-vm3", "test.Service+arg", "ident1"}), 7);
  EXPECT_EQ(with({"12", "test-vm1", "@dispvm", "test.Service", "ident2"}), 7);
  EXPECT_EQ(with({"12", "test-vm1", "test-vm2", "test.Service", "ident3"}), 1);  // denied
  fake_qubesd.Join();
  ASSERT_EQ(fake_qubesd.requests().size(), 3u);
  EXPECT_EQ(fake_qubesd.requests()[0], std::string("admin.vm.Start+ dom0 name test-vm3") + '\0');
  EXPECT_EQ(fake_qubesd.requests()[1],
            std::string("admin.vm.CreateDisposable+ dom0 name default-dvm") + '\0');
  EXPECT_EQ(fake_qubesd.requests()[2], std::string("admin.vm.Start+ dom0 name disp123") + '\0');
  std::ifstream in(log);
  std::string line1, line2, line3;
  std::getline(in, line1);
  std::getline(in, line2);
  EXPECT_EQ(line1, "-Ed test-vm3 -c ident1,test-vm1,12 -- alice:QUBESRPC test.Service+arg test-vm1");
  EXPECT_EQ(line2, "-EWkd disp123 -c ident2,test-vm1,12 -- DEFAULT:QUBESRPC test.Service+ test-vm1");
  EXPECT_FALSE(std::getline(in, line3));
}

}  // namespace
}  // namespace qrexec::policy
