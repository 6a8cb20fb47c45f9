// Real sandboxes: isolation, broker identity, kill, disposables.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <future>
#include <sstream>
#include <thread>

#include "host/broker.h"
#include "host/process.h"
#include "host_fixture.h"

namespace qrexec::host::testing {
namespace {

using namespace std::chrono_literals;

constexpr const char* kDomains = R"(
[[domain]]
name = "work"
class = "StandaloneVM"

[[domain]]
name = "vault"
class = "StandaloneVM"

[[domain]]
name = "other"
class = "StandaloneVM"

[[domain]]
name = "debian"
class = "TemplateVM"

[[domain]]
name = "dvm"
template = "debian"
template_for_dispvms = true
)";

class SandboxTest : public HostFixture {};

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line))
    if (!line.empty()) out.push_back(line);
  return out;
}

TEST_F(SandboxTest, ADomainSeesOnlyItsOwnProcessesAndHasItsNameAsHostname) {
  QREXEC_REQUIRE_ROOT_AND_BWRAP();
  ASSERT_TRUE(MakeHost(kDomains));
  WriteInit("work",
            "cd /home/user\n"
            "hostname > hostname.tmp\n"
            "ls /proc | grep -E '^[0-9]+$' > pids.tmp\n"
            "ps -e -o pid=,comm= > ps.tmp\n"
            "ls /run/qubes > run-qubes.tmp\n"
            "cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d ' ' > netdevs.tmp\n"
            "grep CapEff /proc/self/status > caps.tmp\n"
            "stat -c '%n %a' /tmp /var/tmp /home /home/user > perms\n"
            "mv hostname.tmp hostname; mv pids.tmp pids; mv ps.tmp ps; mv run-qubes.tmp run-qubes\n"
            "mv netdevs.tmp netdevs; mv caps.tmp caps; touch done\n"
            "exec sleep 1000\n");
  ASSERT_TRUE(StartDomain("work"));
  ASSERT_TRUE(WaitForFile(HomeOf("work") + "/done"));
  EXPECT_EQ(ReadFile(HomeOf("work") + "/hostname"), "work\n");
  // PID namespace: bwrap's init, the shell, ls/grep: a handful of small pids,
  // and none of the host's processes (such as this test) by name.
  auto pids = Lines(ReadFile(HomeOf("work") + "/pids"));
  EXPECT_LE(pids.size(), 6u);
  for (const auto& pid : pids) EXPECT_LT(std::stoi(pid), 20) << "pid " << pid;
  std::string ps = ReadFile(HomeOf("work") + "/ps");
  EXPECT_EQ(ps.find("host_sandbox"), std::string::npos) << ps;
  EXPECT_EQ(ps.find("systemd"), std::string::npos) << ps;
  EXPECT_EQ(Lines(ReadFile(HomeOf("work") + "/run-qubes")), std::vector<std::string>{"broker.sock"});
  // Network namespace: loopback only.
  EXPECT_EQ(Lines(ReadFile(HomeOf("work") + "/netdevs")), std::vector<std::string>{"lo"});
  EXPECT_EQ(ReadFile(HomeOf("work") + "/perms"), "/tmp 1777\n/var/tmp 1777\n/home 755\n/home/user 700\n");
  // Capabilities: no CAP_SYS_ADMIN (bit 21).
  std::string caps = ReadFile(HomeOf("work") + "/caps");
  unsigned long long eff = std::stoull(caps.substr(caps.find(':') + 1), nullptr, 16);
  EXPECT_EQ(eff & (1ULL << 21), 0u) << caps;
}

TEST_F(SandboxTest, ADomainCannotSeeOtherDomainsFilesOrTheHostState) {
  QREXEC_REQUIRE_ROOT_AND_BWRAP();
  ASSERT_TRUE(MakeHost(kDomains));
  WriteInit("work", "echo secret > /home/user/work-secret; exec sleep 1000\n");
  WriteInit("vault",
            "cd /home/user\n"
            "find / -xdev -name work-secret 2>/dev/null > found.tmp\n"
            "find / -name work-secret -not -path '/proc/*' 2>/dev/null >> found.tmp\n"
            "ls -A /home > homes.tmp\n"
            "test -e " + dir_ + " && echo visible > state.tmp || echo hidden > state.tmp\n"
            "grep -c -F " + dir_ + "/ /proc/self/mountinfo > paths.tmp; grep ' /etc/passwd ' /proc/self/mountinfo >> paths.tmp\n"
            "echo x > /usr/should-fail 2>/dev/null && echo writable > usr.tmp || echo readonly > usr.tmp\n"
            "mv found.tmp found; mv homes.tmp homes; mv state.tmp state; mv usr.tmp usr; mv paths.tmp paths; touch done\n"
            "exec sleep 1000\n");
  ASSERT_TRUE(StartDomain("work"));
  ASSERT_TRUE(WaitForFile(HomeOf("work") + "/work-secret"));
  ASSERT_TRUE(StartDomain("vault"));
  ASSERT_TRUE(WaitForFile(HomeOf("vault") + "/done"));
  EXPECT_EQ(ReadFile(HomeOf("vault") + "/found"), "");
  EXPECT_EQ(Lines(ReadFile(HomeOf("vault") + "/homes")), std::vector<std::string>{"user"});
  EXPECT_EQ(ReadFile(HomeOf("vault") + "/state"), "hidden\n");
  EXPECT_EQ(ReadFile(HomeOf("vault") + "/usr"), "readonly\n");
  // Of the state directory's paths only the broker socket's shows in
  // mountinfo (/etc/passwd and /etc/group come from memfds), and passwd
  // is mounted.
  std::string paths = ReadFile(HomeOf("vault") + "/paths");
  EXPECT_EQ(paths.substr(0, paths.find('\n')), "1") << paths;
  EXPECT_NE(paths.find(" /etc/passwd "), std::string::npos) << paths;
  EXPECT_FALSE(std::filesystem::exists("/usr/should-fail"));
}

TEST_F(SandboxTest, KillEndsEverythingInTheDomain) {
  QREXEC_REQUIRE_ROOT_AND_BWRAP();
  ASSERT_TRUE(MakeHost(kDomains));
  std::string marker = "31" + std::to_string(::getpid() % 10000);
  WriteInit("work",
            "sleep " + marker + "1 &\n"
            "(sleep " + marker + "2 &) \n"
            "setsid sleep " + marker + "3 &\n"
            "touch /home/user/done; exec sleep " + marker + "4\n");
  ASSERT_TRUE(StartDomain("work"));
  ASSERT_TRUE(WaitForFile(HomeOf("work") + "/done"));
  EXPECT_EQ(ProcessesWith("sleep " + marker).size(), 4u);
  auto sandbox = host_->SandboxPid("work");
  ASSERT_TRUE(sandbox);
  auto before = sys::Clock::now();
  ASSERT_TRUE(host_->Kill("work"));
  EXPECT_LT(sys::Clock::now() - before, 5s);
  EXPECT_TRUE(ProcessesWith("sleep " + marker).empty());
  EXPECT_NE(::kill(*sandbox, 0), 0);
  EXPECT_FALSE(std::filesystem::exists(host_->paths().BrokerSocket("work")));
  // The persistent home stays.
  EXPECT_TRUE(std::filesystem::exists(HomeOf("work") + "/done"));
}

// The domain's init (qrexec-sandbox-init as PID 1) reaps what is orphaned
// to it, and passes a SIGTERM sent to it from inside on to the domain's
// first program, whose exit ends the domain.
TEST_F(SandboxTest, TheDomainsInitReapsOrphansAndPassesOnSigterm) {
  QREXEC_REQUIRE_ROOT_AND_BWRAP();
  ASSERT_TRUE(MakeHost(kDomains));
  WriteInit("work",
            "cd /home/user\n"
            "trap 'touch got-term; exit 0' TERM\n"
            "(sleep 0.1 &)\n"
            "sleep 1\n"
            "grep -h State /proc/[0-9]*/status > states.tmp; mv states.tmp states\n"
            "while :; do sleep 0.1; done\n");
  ASSERT_TRUE(StartDomain("work"));
  ASSERT_TRUE(WaitForFile(HomeOf("work") + "/states"));
  EXPECT_EQ(ReadFile(HomeOf("work") + "/states").find("zombie"), std::string::npos)
      << ReadFile(HomeOf("work") + "/states");
  auto sandbox = host_->SandboxPid("work");
  ASSERT_TRUE(sandbox);
  auto inner = ChildrenOf(*sandbox);
  ASSERT_EQ(inner.size(), 1u);
  ASSERT_EQ(::kill(inner[0], SIGTERM), 0);
  ASSERT_TRUE(WaitForFile(HomeOf("work") + "/got-term"));
  auto until = sys::Clock::now() + 10s;
  while (::kill(inner[0], 0) == 0 && sys::Clock::now() < until) std::this_thread::sleep_for(20ms);
  EXPECT_NE(::kill(inner[0], 0), 0) << "the domain's init outlived its first program";
}

TEST_F(SandboxTest, ADisposableLeavesNoProcessesMountsOrDirectories) {
  QREXEC_REQUIRE_ROOT_AND_BWRAP();
  ASSERT_TRUE(MakeHost(kDomains));
  std::string marker = "32" + std::to_string(::getpid() % 10000);
  // The disposable template's home is copied; its init runs in the copy.
  WriteInit("dvm", "echo from-dvm > /home/user/inherited; touch /home/user/done; exec sleep " + marker + "\n");
  auto created = host_->CreateDisposable("dvm");
  ASSERT_TRUE(created);
  std::string name = created->first;
  ASSERT_TRUE(StartDomain(name));
  std::string storage = host_->paths().disp_dir + "/" + name;
  ASSERT_TRUE(WaitForFile(storage + "/home/done"));
  EXPECT_EQ(ReadFile(storage + "/home/inherited"), "from-dvm\n");
  // The copy belongs to the disposable's own ids, not its template's.
  struct stat copied {};
  ASSERT_EQ(::stat((storage + "/home/init.sh").c_str(), &copied), 0);
  struct stat root_of_home {};
  ASSERT_EQ(::stat((storage + "/home").c_str(), &root_of_home), 0);
  uid_t range_start = root_of_home.st_uid - 1000;  // the home belongs to the range's uid 1000
  EXPECT_LT(copied.st_uid - range_start, 65536u) << "uid " << copied.st_uid << " is outside the disposable's range";
  EXPECT_FALSE(std::filesystem::exists(HomeOf("dvm") + "/inherited"));  // the template is untouched
  EXPECT_EQ(ProcessesWith("sleep " + marker).size(), 1u);
  ASSERT_TRUE(host_->Kill(name));
  EXPECT_TRUE(ProcessesWith("sleep " + marker).empty());
  EXPECT_FALSE(std::filesystem::exists(storage));
  EXPECT_FALSE(host_->Exists(name));
  EXPECT_TRUE(MountsUnder(host_->paths().disp_dir).empty());  // persistent homes stay mounted while the host runs
  EXPECT_FALSE(std::filesystem::exists(host_->paths().BrokerSocket(name)));
  // A second disposable is a new one, with a fresh copy.
  auto second = host_->CreateDisposable("dvm");
  ASSERT_TRUE(second);
  EXPECT_NE(second->second, created->second);
}

TEST_F(SandboxTest, ADomainReachesOnlyThePeerThatNamedItThroughTheBroker) {
  QREXEC_REQUIRE_ROOT_AND_BWRAP();
  ASSERT_TRUE(MakeHost(kDomains));
  for (const char* name : {"work", "vault", "other"}) {
    std::filesystem::create_directories(HomeOf(name));
    std::filesystem::copy_file(QREXEC_BROKER_PROBE, HomeOf(name) + "/probe",
                               std::filesystem::copy_options::overwrite_existing);
  }
  // work (id 1) offers port 600 to vault (id 2); "other" (id 3) tries to join
  // it by naming work as remote; then vault joins.
  WriteInit("work", "cd /home/user; ./probe offer 2 600 20000 > offer.tmp; mv offer.tmp offer; exec sleep 1000\n");
  WriteInit("other",
            "cd /home/user; sleep 0.5; ./probe connect 1 600 1500 > intrude.tmp; mv intrude.tmp intrude\n"
            "./probe offer 3 600 1000 > self.tmp; mv self.tmp self; touch done; exec sleep 1000\n");
  WriteInit("vault",
            "cd /home/user; sleep 3; exec ./probe connect 1 600 10000 > join\n");
  ASSERT_TRUE(StartDomain("work"));
  ASSERT_TRUE(StartDomain("other"));
  ASSERT_TRUE(StartDomain("vault"));
  ASSERT_TRUE(WaitForFile(HomeOf("other") + "/done"));
  EXPECT_EQ(ReadFile(HomeOf("other") + "/intrude"), "timeout\n");
  EXPECT_EQ(ReadFile(HomeOf("other") + "/self"), "status=" + std::to_string(EINVAL) + "\n");
  ASSERT_TRUE(WaitForFile(HomeOf("work") + "/offer"))
      << "work: " << ReadFile(HomeOf("work") + "/offer.tmp") << " vault: " << ReadFile(HomeOf("vault") + "/join")
      << " log: " << ReadFile(host_->paths().log_dir + "/work.log") << ReadFile(host_->paths().log_dir + "/vault.log");
  // The two ends are connected to each other: each got the other's hello.
  EXPECT_EQ(ReadFile(HomeOf("work") + "/offer"), "connected\nhello from vault\n");
  Spin(200ms);
  EXPECT_EQ(ReadFile(HomeOf("vault") + "/join"), "connected\nhello from work\n");
  EXPECT_EQ(host_->broker().paired_count(), 1u);
}

}  // namespace
}  // namespace qrexec::host::testing
