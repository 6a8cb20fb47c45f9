#include "test_util.h"

#include <fcntl.h>
#include <fmt/core.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/check.h"
#include "base/sys.h"

namespace qrexec::policy_tools::testing {

std::string SmallSystemInfoJson() {
  auto domain = [](const char* name, const char* type, const char* uuid, const char* tags,
                   const char* guivm, bool dvm_template, const char* state, const char* internal) {
    return fmt::format(
        R"("{}": {{"tags": [{}], "type": "{}", "template_for_dispvms": {}, )"
        R"("default_dispvm": "default-dvm", "icon": "appvm-red", "label": "0xcc0000", )"
        R"("guivm": {}, "power_state": "{}", "uuid": "{}", "internal": {}}})",
        name, tags, type, dvm_template ? "true" : "false", guivm, state, uuid, internal);
  };
  return "{\"domains\": {" +
         domain("dom0", "AdminVM", "00000000-0000-0000-0000-000000000000", "", "null", false,
                "Running", "null") +
         ", " +
         domain("work", "AppVM", "11111111-1111-1111-1111-111111111111",
                R"("guivm-dom0", "work-tag")", R"("dom0")", false, "Running", "null") +
         ", " +
         domain("personal", "AppVM", "22222222-2222-2222-2222-222222222222", R"("guivm-dom0")",
                R"("dom0")", false, "Running", "null") +
         ", " +
         domain("default-dvm", "AppVM", "33333333-3333-3333-3333-333333333333", "", R"("dom0")",
                true, "Halted", "null") +
         ", " +
         domain("vault", "AppVM", "44444444-4444-4444-4444-444444444444", "", "null", false,
                "Halted", "null") +
         ", " +
         domain("sys-internal", "AppVM", "55555555-5555-5555-5555-555555555555", "", R"("dom0")",
                false, "Running", R"("1")") +
         "}}";
}

FakeQubesd::FakeQubesd(std::string path) {
  auto listener = sys::UnixListen(path);
  QREXEC_CHECK(listener.has_value());
  listener_ = std::move(*listener);
  thread_ = std::thread([this] { Serve(); });
}

FakeQubesd::~FakeQubesd() {
  stop_ = true;
  ::shutdown(listener_.get(), SHUT_RDWR);
  thread_.join();
}

void FakeQubesd::SetJson(std::string json) {
  std::lock_guard lock(mutex_);
  json_ = std::move(json);
}

std::string FakeQubesd::last_request() {
  std::lock_guard lock(mutex_);
  return last_request_;
}

void FakeQubesd::Serve() {
  while (!stop_) {
    pollfd pfd{listener_.get(), POLLIN, 0};
    if (::poll(&pfd, 1, 50) <= 0) continue;
    auto conn = sys::Accept(listener_.get());
    if (!conn) continue;
    auto request =
        sys::ReadToEof(conn->get(), 1 << 16, sys::Deadline::After(std::chrono::seconds(5)));
    std::string reply;
    {
      std::lock_guard lock(mutex_);
      last_request_ = request ? *request : "";
      reply = std::string("0\0", 2) + json_;
    }
    ++calls_;
    (void)sys::WriteAll(conn->get(), reply);
  }
}

std::optional<std::string> Query(const std::string& socket_path, std::string_view request,
                                 milliseconds timeout) {
  auto conn = harness::ConnectUnixRetry(socket_path, timeout);
  if (!conn) return std::nullopt;
  auto deadline = sys::Deadline::After(timeout);
  if (!sys::WriteAll(conn->get(), request, deadline)) return std::nullopt;
  ::shutdown(conn->get(), SHUT_WR);
  auto reply = sys::ReadToEof(conn->get(), 1 << 20, deadline);
  if (!reply) return std::nullopt;
  return *reply;
}

std::string PolicyRequest(std::string_view source, std::string_view target,
                          std::string_view service_and_arg, std::string_view extra_lines) {
  return fmt::format("source={}\n{}intended_target={}\nservice_and_arg={}\n\n", source, extra_lines,
                     target, service_and_arg);
}

ScriptedAgent::ScriptedAgent(std::string socket_path, Answer answer)
    : path_(std::move(socket_path)), answer_(std::move(answer)) {
  auto listener = sys::UnixListen(path_);
  QREXEC_CHECK(listener.has_value());
  listener_ = std::move(*listener);
  auto pipe = sys::Pipe();
  QREXEC_CHECK(pipe.has_value());
  stop_read_ = std::move(pipe->first);
  stop_write_ = std::move(pipe->second);
  thread_ = std::thread([this] { Serve(); });
}

ScriptedAgent::~ScriptedAgent() {
  Release();
  stop_write_.reset();
  thread_.join();
  for (auto& worker : workers_) worker.join();
}

void ScriptedAgent::Hold() {
  std::lock_guard lock(mutex_);
  held_ = true;
}

void ScriptedAgent::Release() {
  {
    std::lock_guard lock(mutex_);
    held_ = false;
  }
  changed_.notify_all();
}

std::vector<std::string> ScriptedAgent::requests() {
  std::lock_guard lock(mutex_);
  return requests_;
}

bool ScriptedAgent::WaitForRequests(size_t count, milliseconds timeout) {
  std::unique_lock lock(mutex_);
  return changed_.wait_for(lock, timeout, [&] { return requests_.size() >= count; });
}

void ScriptedAgent::Serve() {
  for (;;) {
    pollfd fds[2] = {{listener_.get(), POLLIN, 0}, {stop_read_.get(), POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) continue;
    if (fds[1].revents != 0) return;
    auto conn = sys::Accept(listener_.get());
    if (!conn) continue;
    workers_.emplace_back([this, fd = std::move(*conn)]() mutable {
      auto request = sys::ReadToEof(fd.get(), 1 << 20, sys::Deadline::After(milliseconds(10000)));
      if (!request) return;
      std::string reply = answer_(*request);
      {
        std::unique_lock lock(mutex_);
        requests_.push_back(*request);
        changed_.notify_all();
        changed_.wait(lock, [&] { return !held_; });
      }
      // The daemon may have given up on this question: no SIGPIPE here.
      (void)::send(fd.get(), reply.data(), reply.size(), MSG_NOSIGNAL);
    });
  }
}

DaemonUnderTest::~DaemonUnderTest() {
  if (!process_) return;
  process_->Kill(SIGTERM);
  auto status = process_->Wait(milliseconds(10000));
  EXPECT_EQ(status, 0) << "the daemon did not exit cleanly on SIGTERM";
  std::string log = Log();
  EXPECT_EQ(log.find("Sanitizer"), std::string::npos) << log;
  EXPECT_EQ(log.find("runtime error:"), std::string::npos) << log;
}

bool DaemonUnderTest::Start(std::vector<std::string> extra) {
  harness::SpawnOptions options;
  options.argv = {harness::BinPath("qrexec-policy-daemon"),
                  "--policy-path",
                  dir_ / "policy",
                  "--legacy-path",
                  dir_ / "legacy",
                  "--system-info",
                  dir_ / "system-info.json",
                  "--socket-path",
                  policy_socket(),
                  "--eval-socket-path",
                  eval_socket(),
                  "--gui-socket-path",
                  gui_socket(),
                  "--agent-socket",
                  agent_socket()};
  options.argv.insert(options.argv.end(), extra.begin(), extra.end());
  UniqueFd log(
      ::open((dir_ / "daemon.log").c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644));
  options.stdin_mode = harness::Stdio::kNull;
  options.stdout_mode = harness::Stdio::kNull;
  options.stderr_fd = log.get();
  auto process = harness::Process::Spawn(options);
  if (!process) return false;
  process_.emplace(std::move(*process));
  // Ready once the last socket exists (queries retry their connect).
  auto deadline = sys::Deadline::After(milliseconds(10000));
  while (!harness::PathExists(gui_socket())) {
    if (deadline.expired() || !process_->Running()) return false;
    ::usleep(2000);
  }
  return true;
}

std::string DaemonUnderTest::Log() const { return harness::ReadFile(dir_ / "daemon.log"); }

bool DaemonUnderTest::Running() { return process_ && process_->Running(); }

}  // namespace qrexec::policy_tools::testing
