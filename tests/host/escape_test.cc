// A domain's root trying to leave its domain or take the host's resources:
// each test runs the attack from inside a real sandbox and checks the host.
#include <linux/keyctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include <fmt/format.h>

#include "host/process.h"
#include "host/userns.h"
#include "host_fixture.h"

namespace qrexec::host::testing {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

constexpr const char* kTwoDomains = R"(
[[domain]]
name = "work"
class = "StandaloneVM"

[[domain]]
name = "vault"
class = "StandaloneVM"
)";

class EscapeTest : public HostFixture {
 protected:
  void InstallProbe(const std::string& name) {
    fs::create_directories(HomeOf(name));
    fs::copy_file(QREXEC_ESCAPE_PROBE, HomeOf(name) + "/probe", fs::copy_options::overwrite_existing);
  }
  // "NAME RESULT" lines -> map.
  std::map<std::string, std::string> Results(const std::string& path) {
    std::map<std::string, std::string> out;
    std::istringstream in(ReadFile(path));
    for (std::string name, result; in >> name >> result;) out[name] = result;
    return out;
  }
};

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

// The "Uid:" or "Gid:" fields of /proc/PID/status (real, effective, saved, fs).
std::vector<unsigned long> IdsOfProcess(pid_t pid, const std::string& field) {
  std::istringstream in(ReadAll("/proc/" + std::to_string(pid) + "/status"));
  std::vector<unsigned long> ids;
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(field + ":", 0) != 0) continue;
    std::istringstream values(line.substr(field.size() + 1));
    for (unsigned long id; values >> id;) ids.push_back(id);
  }
  return ids;
}

std::string StatusField(pid_t pid, const std::string& field) {
  std::istringstream in(ReadAll("/proc/" + std::to_string(pid) + "/status"));
  for (std::string line; std::getline(in, line);)
    if (line.rfind(field + ":", 0) == 0) return line.substr(line.find_first_not_of(" \t", field.size() + 1));
  return "";
}

// The init of the PID namespace `pid` is in: its ancestor whose pid in
// the innermost namespace (the last NSpid value) is 1.
pid_t InitOfNamespaceOf(pid_t pid) {
  for (int depth = 0; depth < 64 && pid > 0; ++depth) {
    std::string nspid = StatusField(pid, "NSpid");
    if (nspid.substr(nspid.find_last_of(" \t") + 1) == "1") return pid;
    pid = ParentOf(pid).value_or(-1);
  }
  return -1;
}

TEST_F(EscapeTest, ADomainsRootCannotChangeTheHostKernelOrTouchItsKeyrings) {
  QREXEC_REQUIRE_ROOT_AND_BWRAP();
  ASSERT_TRUE(MakeHost(kTwoDomains));
  std::string core_pattern = ReadAll("/proc/sys/kernel/core_pattern");
  // A key of host root's, which a domain must neither read nor unlink.
  long key = ::syscall(SYS_add_key, "user", "qrexec-escape-test", "secret", 6, KEY_SPEC_USER_KEYRING);
  ASSERT_GE(key, 0) << std::strerror(errno);
  InstallProbe("work");
  WriteInit("work", "cd /home/user; ./probe syscalls > out.tmp 2>&1; mv out.tmp out; exec sleep 1000\n");
  ASSERT_TRUE(StartDomain("work"));
  ASSERT_TRUE(WaitForFile(HomeOf("work") + "/out"));
  auto results = Results(HomeOf("work") + "/out");
  ASSERT_EQ(results["getpid"], "ok") << ReadFile(HomeOf("work") + "/out");
  for (const char* call : {"add_key", "keyctl", "request_key", "bpf", "perf_event_open", "userfaultfd",
                           "io_uring_setup", "kexec_load", "init_module", "unshare_user", "mount"})
    EXPECT_EQ(results[call], "EPERM") << call;
  for (const char* file : {"core_pattern", "modprobe_path", "drop_caches", "sysrq"})
    // EACCES/EROFS/EPERM; ENOENT where this kernel has no such file.
    EXPECT_TRUE(!results[file].empty() && results[file] != "ok")
        << file << ": " << results[file] << "\n" << ReadFile(HomeOf("work") + "/out");
  EXPECT_EQ(ReadAll("/proc/sys/kernel/core_pattern"), core_pattern);
  char value[16] = {};
  EXPECT_EQ(::syscall(SYS_keyctl, KEYCTL_READ, key, value, sizeof value), 6) << std::strerror(errno);
  EXPECT_STREQ(value, "secret");
  ::syscall(SYS_keyctl, KEYCTL_UNLINK, key, KEY_SPEC_USER_KEYRING);
}

TEST_F(EscapeTest, NothingInADomainRunsAsAHostAccountAndDomainsShareNoIds) {
  QREXEC_REQUIRE_ROOT_AND_BWRAP();
  ASSERT_TRUE(MakeHost(kTwoDomains));
  std::string marker = "47" + std::to_string(::getpid() % 10000);
  for (const char* name : {"work", "vault"}) {
    WriteInit(name, "cd /home/user; touch made-inside; sleep " + marker + " & touch done; exec sleep " + marker +
                        "1\n");
    ASSERT_TRUE(StartDomain(name));
    ASSERT_TRUE(WaitForFile(HomeOf(name) + "/done"));
  }
  auto pids = ProcessesWith("sleep " + marker);
  ASSERT_EQ(pids.size(), 4u);
  // The domains' own inits are checked as well (bwrap's reaper kept a full
  // bounding set), and they are not the sleeps themselves.
  std::set<pid_t> inits;
  for (pid_t pid : pids) inits.insert(InitOfNamespaceOf(pid));
  ASSERT_EQ(inits.size(), 2u);
  ASSERT_FALSE(inits.count(-1));
  for (pid_t init : inits) EXPECT_FALSE(std::count(pids.begin(), pids.end(), init));
  std::vector<pid_t> checked = pids;
  checked.insert(checked.end(), inits.begin(), inits.end());
  std::map<unsigned long, int> ranges;  // range start -> processes in it
  for (pid_t pid : checked) {
    for (const char* field : {"Uid", "Gid"}) {
      auto ids = IdsOfProcess(pid, field);
      ASSERT_EQ(ids.size(), 4u);
      for (unsigned long id : ids) {
        EXPECT_GE(id, kDefaultIdBase) << field << " of " << pid << " is a host id";
        if (std::string(field) == "Uid") ++ranges[(id - kDefaultIdBase) / kIdsPerDomain];
      }
    }
    // Least privilege: no_new_privs, a seccomp filter, and a bounding set
    // with nothing beyond the domain's capabilities (no CAP_SYS_ADMIN 21,
    // no CAP_SETPCAP 8).
    EXPECT_EQ(StatusField(pid, "NoNewPrivs"), "1");
    EXPECT_EQ(StatusField(pid, "Seccomp"), "2");
    unsigned long long bounding = std::stoull(StatusField(pid, "CapBnd"), nullptr, 16);
    EXPECT_EQ(bounding & ((1ULL << 21) | (1ULL << 8)), 0u) << StatusField(pid, "CapBnd");
  }
  // Two domains, two disjoint id ranges (4 ids each: r, e, s, fs uid of 2
  // sleeps and the init).
  ASSERT_EQ(ranges.size(), 2u);
  for (const auto& [range, count] : ranges) EXPECT_EQ(count, 12) << "range " << range;
  // Files a domain makes are owned by its range on the host, not by root.
  struct stat st {};
  ASSERT_EQ(::stat((HomeOf("work") + "/made-inside").c_str(), &st), 0);
  EXPECT_GE(st.st_uid, kDefaultIdBase);
  // A host account (uid 1000) cannot read a domain process's environment.
  pid_t child = ::fork();
  if (child == 0) {
    if (::setresgid(1000, 1000, 1000) < 0 || ::setresuid(1000, 1000, 1000) < 0) ::_exit(3);
    std::ifstream environ("/proc/" + std::to_string(pids[0]) + "/environ");
    std::string text;
    std::getline(environ, text);
    ::_exit(environ.good() || !text.empty() ? 1 : 0);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "host uid 1000 read a domain's environment";
}

TEST_F(EscapeTest, ADomainAtItsLimitsFailsAloneAndTheHostGoesOn) {
  QREXEC_REQUIRE_ROOT_AND_BWRAP();
  ASSERT_TRUE(MakeHost(std::string(kTwoDomains) + R"(
[[domain]]
name = "greedy"
class = "StandaloneVM"
memory = "64M"
max_processes = 64
tmpfs_size = "8M"
home_size = "32M"
)"));
  InstallProbe("greedy");
  WriteInit("greedy",
            "cd /home/user\n"
            "./probe alloc 256 > alloc.out 2>&1; echo $? > alloc.rc\n"
            "dd if=/dev/zero of=/home/user/fill bs=1M count=64 2>/dev/null; echo $? > /run/home.rc\n"
            "rm -f /home/user/fill; mv /run/home.rc home.rc\n"
            "awk '$5 == \"/home/user\" {print $4}' /proc/self/mountinfo > home-root\n"
            "dd if=/dev/zero of=/tmp/fill bs=1M count=32 2> dd.err; echo $? > dd.rc\n"
            "./probe fork 500 > fork.out\n");
  WriteInit("work", "cd /home/user; sleep 1; touch alive; exec sleep 1000\n");
  ASSERT_TRUE(StartDomain("greedy"));
  ASSERT_TRUE(WaitForFile(HomeOf("greedy") + "/alloc.rc"));
  // The memory hog is killed inside its domain (or refused memory).
  std::string alloc_rc = ReadFile(HomeOf("greedy") + "/alloc.rc");
  EXPECT_NE(alloc_rc, "0\n") << ReadFile(HomeOf("greedy") + "/alloc.out");
  // Its home is full at 32 MiB, and it is the root of its own filesystem:
  // no host path of the home shows in the domain's mountinfo.
  ASSERT_TRUE(WaitForFile(HomeOf("greedy") + "/home.rc"));
  EXPECT_NE(ReadFile(HomeOf("greedy") + "/home.rc"), "0\n");
  EXPECT_EQ(ReadFile(HomeOf("greedy") + "/home-root"), "/\n");
  // Its tmpfs is full at 8 MiB.
  ASSERT_TRUE(WaitForFile(HomeOf("greedy") + "/dd.rc"));
  EXPECT_NE(ReadFile(HomeOf("greedy") + "/dd.rc"), "0\n");
  EXPECT_NE(ReadFile(HomeOf("greedy") + "/dd.err").find("No space left"), std::string::npos);
  // The fork loop stops at the process limit.
  ASSERT_TRUE(WaitForFile(HomeOf("greedy") + "/fork.out"));
  for (int i = 0; i < 200 && ReadFile(HomeOf("greedy") + "/fork.out").empty(); ++i) Spin(50ms);
  std::istringstream fork_out(ReadFile(HomeOf("greedy") + "/fork.out"));
  std::string word;
  long forked = -1;
  fork_out >> word >> forked;
  EXPECT_GT(forked, 0);
  EXPECT_LT(forked, 64);
  // With the greedy domain at its process limit, the host and another
  // domain go on.
  auto rc = RunProgram({"/bin/true"}, sys::Deadline::After(10s));
  ASSERT_TRUE(rc);
  EXPECT_EQ(*rc, 0);
  ASSERT_TRUE(StartDomain("work"));
  EXPECT_TRUE(WaitForFile(HomeOf("work") + "/alive"));
}

TEST_F(EscapeTest, ADomainsUserCannotJoinTheChannelsOfCallsToTheDomain) {
  QREXEC_REQUIRE_ROOT_AND_BWRAP();
  ASSERT_TRUE(MakeHost(kTwoDomains));
  fs::create_directories(HomeOf("work"));
  fs::copy_file(QREXEC_BROKER_PROBE, HomeOf("work") + "/broker-probe", fs::copy_options::overwrite_existing);
  // As the domain's user (uid 1000 inside): joining a channel dom0 would
  // offer for a call to this domain, offering its control channel, and
  // offering a data channel first (the port of another caller's outgoing
  // call; the agent offers those for their callers) are all refused at once
  // (EPERM). Root may join: it waits for its peer.
  const std::string as_user = "setpriv --reuid=1000 --regid=1000 --clear-groups ";
  WriteInit("work",
            "cd /home/user\n" + as_user + "./broker-probe connect 0 600 1000 > user-join 2>&1\n" + as_user +
                "./broker-probe offer 0 512 1000 > user-control 2>&1\n" + as_user +
                "./broker-probe offer 0 601 1000 > user-offer 2>&1\n"
                "./broker-probe connect 0 602 1000 > root-join 2>&1; touch done; exec sleep 1000\n");
  ASSERT_TRUE(StartDomain("work"));
  ASSERT_TRUE(WaitForFile(HomeOf("work") + "/done", 30s));
  EXPECT_EQ(ReadFile(HomeOf("work") + "/user-join"), fmt::format("status={}\n", EPERM));
  EXPECT_EQ(ReadFile(HomeOf("work") + "/user-control"), fmt::format("status={}\n", EPERM));
  EXPECT_EQ(ReadFile(HomeOf("work") + "/user-offer"), fmt::format("status={}\n", EPERM));
  EXPECT_EQ(ReadFile(HomeOf("work") + "/root-join"), "timeout\n");
}

TEST_F(EscapeTest, TheHostRefusesAStateDirectorySomeoneElseCouldChange) {
  QREXEC_REQUIRE_ROOT_AND_BWRAP();
  auto init_with_state = [&](const std::string& state) {
    auto config = ParseConfig("[host]\nstate_dir = \"" + state + "\"\n", dir_ + "/host.toml");
    EXPECT_TRUE(config);
    HostOptions options;
    options.config = *config;
    options.bin_dir = QREXEC_BIN_DIR;
    options.start_daemons = options.start_policy_daemon = options.autostart = false;
    Host host(loop_, options);
    return host.Init();
  };
  // Pre-created by another user (as under a world-writable /var/tmp).
  std::string foreign = dir_ + "/foreign";
  fs::create_directories(foreign + "/run");
  ASSERT_EQ(::chown(foreign.c_str(), 12345, 12345), 0);
  auto status = init_with_state(foreign);
  ASSERT_FALSE(status);
  EXPECT_NE(status.error().message.find("belongs to uid 12345"), std::string::npos) << status.error().message;
  EXPECT_FALSE(fs::exists(foreign + "/run/qrexec-policy-exec"));
  // Below a directory others may write to (no sticky bit).
  std::string open_dir = dir_ + "/open";
  fs::create_directories(open_dir);
  ASSERT_EQ(::chmod(open_dir.c_str(), 0777), 0);
  status = init_with_state(open_dir + "/state");
  ASSERT_FALSE(status);
  EXPECT_NE(status.error().message.find("writable by others"), std::string::npos) << status.error().message;
  // A good one: everything the host made is ours, and nothing it runs as
  // root is writable by anyone else.
  ASSERT_TRUE(MakeHost(kTwoDomains));
  for (const auto& entry : fs::recursive_directory_iterator(dir_ + "/state")) {
    struct stat st {};
    ASSERT_EQ(::lstat(entry.path().c_str(), &st), 0);
    if (entry.path().string().find("/home") != std::string::npos) continue;
    EXPECT_EQ(st.st_uid, 0u) << entry.path();
    if (!S_ISSOCK(st.st_mode)) {
      EXPECT_EQ(st.st_mode & 022, 0u) << entry.path();
    }
  }
  struct stat wrapper {};
  ASSERT_EQ(::stat((dir_ + "/state/run/qrexec-policy-exec").c_str(), &wrapper), 0);
  EXPECT_EQ(wrapper.st_mode & 07777, 0700u);
}

}  // namespace
}  // namespace qrexec::host::testing
