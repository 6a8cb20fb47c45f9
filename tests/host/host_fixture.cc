#include "host_fixture.h"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

namespace qrexec::host::testing {

using namespace std::chrono_literals;

bool HaveRootAndBwrap() { return ::geteuid() == 0 && ::access("/usr/bin/bwrap", X_OK) == 0; }

void HostFixture::SetUp() {
  char tmpl[] = "/tmp/qrexec_host_test.XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  dir_ = tmpl;
  // Searchable by others: each domain's bwrap runs as that domain's root,
  // an unprivileged host uid, and must reach its bind sources.
  ASSERT_EQ(::chmod(tmpl, 0711), 0);
}

void HostFixture::TearDown() {
  host_.reset();  // shuts everything down
  EXPECT_TRUE(MountsUnder(dir_).empty()) << "the host left mounts behind";
  std::filesystem::remove_all(dir_);
}

bool HostFixture::MakeHost(const std::string& config_text, bool with_daemons) {
  std::string text = "[host]\nstate_dir = \"" + dir_ + "/state\"\n" + config_text;
  auto config = ParseConfig(text, dir_ + "/host.toml");
  if (!config) {
    ADD_FAILURE() << config.error().ToString();
    return false;
  }
  HostOptions options;
  options.config = *config;
  options.bin_dir = QREXEC_BIN_DIR;
  options.start_daemons = with_daemons;
  options.start_policy_daemon = with_daemons;
  options.autostart = with_daemons;
  if (!with_daemons) options.sandbox_command = {"/bin/sh", "/home/user/init.sh"};
  options.start_timeout = 20s;
  host_ = std::make_unique<Host>(loop_, options);
  auto status = host_->Init();
  if (!status) {
    ADD_FAILURE() << status.error().ToString();
    return false;
  }
  return true;
}

std::string HostFixture::HomeOf(const std::string& name) const {
  return dir_ + "/state/domains/" + name + "/home";
}

void HostFixture::WriteInit(const std::string& name, const std::string& script) {
  std::filesystem::create_directories(HomeOf(name));
  std::ofstream(HomeOf(name) + "/init.sh") << script;
}

::testing::AssertionResult HostFixture::StartDomain(const std::string& name) {
  bool done = false;
  Status result = Ok();
  host_->Start(name, [&](Status status) {
    result = status;
    done = true;
  });
  auto limit = sys::Clock::now() + 30s;
  while (!done && sys::Clock::now() < limit) {
    if (!loop_.RunOnce(20ms)) return ::testing::AssertionFailure() << "loop failed";
  }
  if (!done) return ::testing::AssertionFailure() << name << " did not start in time";
  if (!result) return ::testing::AssertionFailure() << result.error().ToString();
  return ::testing::AssertionSuccess();
}

bool HostFixture::WaitForFile(const std::string& path, std::chrono::milliseconds limit) {
  auto until = sys::Clock::now() + limit;
  while (sys::Clock::now() < until) {
    if (std::filesystem::exists(path)) {
      Spin(50ms);  // let the writer finish
      return true;
    }
    (void)loop_.RunOnce(20ms);
  }
  return false;
}

std::string HostFixture::ReadFile(const std::string& path) const {
  std::ifstream in(path);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

void HostFixture::Spin(std::chrono::milliseconds how_long) {
  auto until = sys::Clock::now() + how_long;
  while (sys::Clock::now() < until) (void)loop_.RunOnce(10ms);
}

std::vector<pid_t> HostFixture::ProcessesWith(const std::string& marker) {
  std::vector<pid_t> out;
  DIR* proc = ::opendir("/proc");
  if (proc == nullptr) return out;
  while (dirent* entry = ::readdir(proc)) {
    char* end = nullptr;
    long pid = std::strtol(entry->d_name, &end, 10);
    if (*end != '\0' || pid <= 0) continue;
    std::ifstream in(std::string("/proc/") + entry->d_name + "/cmdline", std::ios::binary);
    std::string cmdline((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    for (char& c : cmdline)
      if (c == '\0') c = ' ';
    if (cmdline.find(marker) != std::string::npos) out.push_back(static_cast<pid_t>(pid));
  }
  ::closedir(proc);
  return out;
}

std::vector<std::string> HostFixture::MountsUnder(const std::string& prefix) {
  std::vector<std::string> out;
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string id, parent, devs, root, mount_point;
    fields >> id >> parent >> devs >> root >> mount_point;
    if (mount_point.rfind(prefix, 0) == 0) out.push_back(mount_point);
  }
  return out;
}

}  // namespace qrexec::host::testing
