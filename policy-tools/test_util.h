// Helpers for the policy-tools tests: a running qrexec-policy-daemon in a
// temporary directory, one-shot socket queries, and a scripted policy agent.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "base/unique_fd.h"
#include "harness.h"

namespace qrexec::policy_tools::testing {

using std::chrono::milliseconds;

// A small system: dom0, work and personal (GuiVM dom0), default-dvm (a
// disposable template), vault (no GuiVM, not running), sys-internal (internal).
std::string SmallSystemInfoJson();

// Connects, sends `request`, half-closes and reads the answer until EOF.
// nullopt when the connection failed or the answer did not end in time.
std::optional<std::string> Query(const std::string& socket_path, std::string_view request,
                                 milliseconds timeout = milliseconds(10000));
// A policy.sock request in the order the C daemon writes it.
std::string PolicyRequest(std::string_view source, std::string_view target,
                          std::string_view service_and_arg, std::string_view extra_lines = "");

// A qubesd that answers internal.GetSystemInfo with whatever JSON is set.
class FakeQubesd {
 public:
  explicit FakeQubesd(std::string path);
  ~FakeQubesd();
  void SetJson(std::string json);
  int calls() const { return calls_; }
  std::string last_request();

 private:
  void Serve();
  UniqueFd listener_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<int> calls_{0};
  std::mutex mutex_;
  std::string json_;
  std::string last_request_;
};

// A policy agent played by the test: records every request (header + NUL +
// JSON) and answers with `answer(request)`. While `Hold()` is in effect the
// answers wait until `Release()`.
class ScriptedAgent {
 public:
  using Answer = std::function<std::string(const std::string& request)>;
  ScriptedAgent(std::string socket_path, Answer answer);
  ~ScriptedAgent();
  void Hold();
  void Release();
  std::vector<std::string> requests();
  // Waits until at least `count` requests arrived.
  bool WaitForRequests(size_t count, milliseconds timeout = milliseconds(10000));

 private:
  void Serve();
  std::string path_;
  Answer answer_;
  UniqueFd listener_;
  UniqueFd stop_read_, stop_write_;
  std::thread thread_;
  std::mutex mutex_;
  std::condition_variable changed_;
  bool held_ = false;
  std::vector<std::string> requests_;
  std::vector<std::thread> workers_;
};

// A qrexec-policy-daemon on sockets in `dir` with its log in dir/daemon.log.
class DaemonUnderTest {
 public:
  explicit DaemonUnderTest(const harness::TempDir& dir) : dir_(dir) {}
  ~DaemonUnderTest();
  // Starts it with --policy-path dir/policy --system-info dir/system-info.json
  // plus `extra` arguments and waits until policy.sock accepts connections.
  bool Start(std::vector<std::string> extra = {});
  std::string policy_socket() const { return dir_ / "policy.sock"; }
  std::string eval_socket() const { return dir_ / "policy.EvalSimple"; }
  std::string gui_socket() const { return dir_ / "policy.EvalGUI"; }
  std::string agent_socket() const { return dir_ / "agent.sock"; }
  std::string Log() const;
  bool Running();

 private:
  const harness::TempDir& dir_;
  std::optional<harness::Process> process_;
};

}  // namespace qrexec::policy_tools::testing
