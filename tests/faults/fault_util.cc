#include "fault_util.h"

#include <dirent.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

namespace qrexec::faults {
namespace {

const char* kPolicy = R"(
demo.Echo     *  @anyvm  @anyvm  allow
demo.Hold     *  @anyvm  @anyvm  allow
demo.Hold     *  @anyvm  @adminvm  allow
demo.Produce  *  @anyvm  @anyvm  allow
demo.HalfIn   *  @anyvm  @anyvm  allow
demo.SlowSink *  @anyvm  @anyvm  allow
demo.HalfOut  *  @anyvm  @anyvm  allow
demo.Ask      *  @anyvm  @anyvm  ask default_target=vault
demo.Denied   *  @anyvm  @anyvm  deny
)";

std::string ReadProc(pid_t pid, const char* file) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/" + file);
  if (!in) return {};
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

// "pid (comm) S ppid ..." -> (state, ppid); comm may contain spaces/parens.
bool ParseStat(const std::string& stat, char& state, pid_t& ppid) {
  auto close = stat.rfind(')');
  if (close == std::string::npos || close + 4 > stat.size()) return false;
  std::istringstream rest(stat.substr(close + 2));
  rest >> state >> ppid;
  return static_cast<bool>(rest);
}

}  // namespace

int CountFds(pid_t pid) {
  std::error_code ec;
  int count = 0;
  std::filesystem::directory_iterator it("/proc/" + std::to_string(pid) + "/fd", ec);
  if (ec) return -1;
  for (; it != std::filesystem::directory_iterator(); it.increment(ec)) {
    if (ec) return -1;
    ++count;
  }
  return count;
}

long RssKiB(pid_t pid) {
  std::istringstream status(ReadProc(pid, "status"));
  std::string line;
  while (std::getline(status, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::strtol(line.c_str() + 6, nullptr, 10);
  return -1;
}

pid_t ParentPid(pid_t pid) {
  char state = 0;
  pid_t ppid = -1;
  return ParseStat(ReadProc(pid, "stat"), state, ppid) ? ppid : -1;
}

char ProcState(pid_t pid) {
  char state = 0;
  pid_t ppid = -1;
  return ParseStat(ReadProc(pid, "stat"), state, ppid) ? state : '\0';
}

bool Dead(pid_t pid) {
  char state = ProcState(pid);
  return state == '\0' || state == 'Z' || state == 'X';
}

std::vector<pid_t> ChildrenOf(pid_t parent) {
  std::vector<pid_t> children;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/proc", ec)) {
    const std::string name = entry.path().filename().string();
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
    pid_t pid = std::atoi(name.c_str());
    char state = 0;
    pid_t ppid = -1;
    if (ParseStat(ReadProc(pid, "stat"), state, ppid) && ppid == parent && state != 'Z' && state != 'X')
      children.push_back(pid);
  }
  return children;
}

bool CallHandlerDone(pid_t handler) {
  constexpr int kIdleWarmHandlerFds = 4;
  return Dead(handler) || (ChildrenOf(handler).empty() && CountFds(handler) <= kIdleWarmHandlerFds);
}

std::vector<std::string> ZombieChildrenOf(const std::vector<pid_t>& parents) {
  std::vector<std::string> zombies;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/proc", ec)) {
    const std::string name = entry.path().filename().string();
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
    pid_t pid = std::atoi(name.c_str());
    std::string stat = ReadProc(pid, "stat");
    char state = 0;
    pid_t ppid = -1;
    if (!ParseStat(stat, state, ppid) || state != 'Z') continue;
    for (pid_t parent : parents)
      if (parent == ppid) zombies.push_back(name + "(" + std::to_string(ppid) + ") " + stat.substr(0, 60));
  }
  return zombies;
}

bool WaitUntil(const std::function<bool()>& done, milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (done()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(milliseconds(10));
  }
}

std::optional<std::string> ReadLine(int fd, milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  std::string line;
  for (;;) {
    auto left = std::chrono::duration_cast<milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return std::nullopt;
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
    char c;
    ssize_t n = ::read(fd, &c, 1);
    if (n <= 0) return std::nullopt;
    if (c == '\n') return line;
    line += c;
  }
}

std::string ReadAll(int fd, milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  std::string out;
  char buf[65536];
  for (;;) {
    auto left = std::chrono::duration_cast<milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return out;
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n <= 0) return out;
    out.append(buf, static_cast<size_t>(n));
  }
}

pid_t ReadPidFile(const std::string& path, milliseconds timeout) {
  pid_t pid = -1;
  WaitUntil(
      [&] {
        std::ifstream in(path);
        std::string line;
        if (!std::getline(in, line) || line.empty()) return false;
        pid = std::atoi(line.c_str());
        return pid > 0;
      },
      timeout);
  return pid;
}

uint64_t TestSeed() {
  uint64_t seed = 0;
  if (const char* env = std::getenv("QREXEC_FAULT_SEED"); env && *env)
    seed = std::strtoull(env, nullptr, 10);
  else
    seed = static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
  std::printf("random seed %llu (set QREXEC_FAULT_SEED=%llu to repeat)\n",
              static_cast<unsigned long long>(seed), static_cast<unsigned long long>(seed));
  return seed;
}

// --- the fixture ---

void FaultTest::SetUp() {
  qubes_ = std::make_unique<MiniQubes>(
      std::vector<harness::DomainSpec>{
          {.name = "work", .domid = 1},
          {.name = "vault", .domid = 2},
          {.name = "other", .domid = 3},
          {.name = "mal", .domid = 4},
      },
      kPolicy);
  const std::string root = qubes_->root();
  std::filesystem::create_directories(root + "/pids");
  for (const char* vm : {"vault", "other", "mal", "work", "dom0"}) {
    harness::WriteScript(qubes_->ServiceDir(vm) + "/demo.Ask", "echo asked-and-allowed\n");
    std::string dir = qubes_->ServiceDir(vm);
    std::string pids = root + "/pids/" + vm;
    harness::WriteScript(dir + "/demo.Echo", "exec cat\n");
    harness::WriteScript(dir + "/demo.Hold", "echo $$ > " + pids + ".hold\necho started\nread line\n"
                                                 "echo \"got $line\"\nexit 3\n");
    harness::WriteScript(dir + "/demo.Produce",
                         "echo $$ > " + pids + ".produce\nexec head -c \"$1\" /dev/zero\n");
    // Does not read for 2 s, then reads everything and reports the count.
    harness::WriteScript(dir + "/demo.SlowSink",
                         "echo $$ > " + pids + ".slowsink\nsleep 2\nwc -c\n");
    // Reads its whole stdin (hash to a file), then keeps writing for a while.
    harness::WriteScript(dir + "/demo.HalfIn", "sha256sum > " + pids + ".halfin\n"
                                                   "i=0; while [ $i -lt 20 ]; do head -c 100000 " +
                                                   root + "/blob; sleep 0.02; i=$((i+1)); done\n");
    // Closes its stdout first, then keeps reading stdin.
    harness::WriteScript(dir + "/demo.HalfOut",
                         "echo early\nexec 1>&-\nsha256sum > " + pids + ".halfout\n");
  }
  fallback_ = root + "/fallback-policy";
  harness::WriteScript(fallback_, "exec '" + harness::BinPath("qrexec-policy-exec") + "' --path '" +
                                      root + "/policy' --qubesd-socket '" + root +
                                      "/run/qubesd.sock' \"$@\"\n");
  qubes_->SetPolicyProgram(fallback_);
  ASSERT_TRUE(qubes_->Start()) << qubes_->error();
  ExpectCallsWork("at start");
  RecordIdle();
}

void FaultTest::TearDown() {
  if (!qubes_) return;
  // Sanitizer reports of our processes (asan build), including leak reports
  // at their exit on SIGTERM, fail the test.
  qubes_->Stop();
  const std::string logs = qubes_->Logs();
  for (const char* report : {"ERROR: AddressSanitizer", "runtime error:", "ERROR: LeakSanitizer"})
    EXPECT_EQ(logs.find(report), std::string::npos) << "sanitizer report in the logs: " << report;
  if (HasFailure()) std::printf("%s\n", logs.c_str());
  qubes_.reset();
}

std::vector<pid_t> FaultTest::OurPids() {
  std::vector<pid_t> pids = qubes_->Dom0Pids();
  for (const char* vm : {"work", "vault", "other", "mal"})
    if (pid_t pid = qubes_->AgentPid(vm); pid > 0) pids.push_back(pid);
  return pids;
}

// The idle value is the lowest count seen over 300 ms: the end of a call is
// reported asynchronously (trigger socket, daemon client, port release), so
// one sample right after a call may still include its descriptors.
void FaultTest::RecordIdle() {
  idle_fds_.clear();
  for (pid_t pid : OurPids()) idle_fds_[pid] = CountFds(pid);
  for (int i = 0; i < 30; ++i) {
    std::this_thread::sleep_for(milliseconds(10));
    for (auto& [pid, idle] : idle_fds_) idle = std::min(idle, CountFds(pid));
  }
}

HeldCall FaultTest::StartHeldCall(const std::string& source, const std::string& target) {
  return StartHeld(qubes_->ClientVm(source, {target, "demo.Hold"}), target, qubes_->AgentPid(target));
}

HeldCall FaultTest::StartHeld(const SpawnOptions& options, const std::string& where, pid_t grandparent) {
  HeldCall call;
  std::string pid_file = qubes_->root() + "/pids/" + where + ".hold";
  std::filesystem::remove(pid_file);
  auto process = Process::Spawn(options);
  if (!process) {
    ADD_FAILURE() << "cannot spawn " << options.argv[0];
    return call;
  }
  call.client = std::make_unique<Process>(std::move(*process));
  auto line = ReadLine(call.client->stdout_fd(), milliseconds(10000));
  EXPECT_EQ(line.value_or("<nothing>"), "started") << qubes_->Logs();
  call.service = ReadPidFile(pid_file, milliseconds(5000));
  call.handler = call.service > 0 ? ParentPid(call.service) : -1;
  EXPECT_EQ(ParentPid(call.handler), grandparent) << "unexpected process tree above the service";
  return call;
}

RunResult FaultTest::Echo(const std::string& source, const std::string& target,
                          const std::string& input) {
  return harness::RunProgram(qubes_->ClientVm(source, {target, "demo.Echo"}), input,
                             milliseconds(20000));
}

void FaultTest::ExpectKillingTheCallerEndsTheCall(HeldCall& call, const std::string& context) {
  ASSERT_GT(call.service, 0);
  call.client->Kill(SIGKILL);
  EXPECT_TRUE(call.client->Wait(kFiveSeconds).has_value());
  EXPECT_TRUE(WaitUntil([&] { return Dead(call.service); }, kFiveSeconds)) << context << ": service still runs";
  EXPECT_TRUE(WaitUntil([&] { return CallHandlerDone(call.handler); }, kFiveSeconds))
      << context << ": handler still runs the call";
  ExpectIdleAndNoZombies(context);
  ExpectCallsWork(context);
}

void FaultTest::ExpectCallsWork(const std::string& context) {
  const std::pair<const char*, const char*> pairs[] = {{"work", "vault"}, {"work", "other"}, {"other", "vault"}};
  for (auto [source, target] : pairs) {
    std::string input = std::string("ping ") + source + " " + target + " " + context;
    auto result = Echo(source, target, input);
    EXPECT_EQ(result.exit_code, 0) << context << ": " << source << " -> " << target << ": " << result.err;
    EXPECT_EQ(result.out, input) << context;
  }
}

void FaultTest::ExpectIdleAndNoZombies(const std::string& context) {
  for (const auto& entry : idle_fds_) {
    const pid_t pid = entry.first;  // clang 14 cannot capture structured bindings
    const int idle = entry.second;
    if (Dead(pid)) continue;
    int now = -1, allowed = idle;
    bool back = WaitUntil(
        [&] {
          // An agent keeps its warm call handlers (agent/warm_handlers.h).
          int handlers = 0;
          for (pid_t child : ChildrenOf(pid)) handlers += ReadProc(child, "comm") == "qrexec-agent\n";
          allowed = idle + kAgentFdsPerWarmHandler * handlers;
          now = CountFds(pid);
          return now <= allowed;
        },
        milliseconds(5000));
    EXPECT_TRUE(back) << context << ": pid " << pid << " (" << ReadProc(pid, "comm").substr(0, ReadProc(pid, "comm").find('\n')) << ") has " << now
                      << " descriptors, idle was " << idle << ", allowed with its warm handlers " << allowed;
  }
  std::vector<pid_t> parents = OurPids();
  parents.push_back(getpid());
  std::vector<std::string> zombies;
  bool none = WaitUntil(
      [&] {
        zombies = ZombieChildrenOf(parents);
        return zombies.empty();
      },
      milliseconds(5000));
  std::string list;
  for (const auto& z : zombies) list += z + "\n";
  EXPECT_TRUE(none) << context << ": zombies left:\n" << list;
}

std::string FaultTest::Log(const std::string& name) {
  return harness::ReadFile(qubes_->root() + "/logs/" + name + ".log");
}

}  // namespace qrexec::faults
