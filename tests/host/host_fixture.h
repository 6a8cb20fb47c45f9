// A host with real sandboxes in a temporary state directory. Each domain's
// first process is /home/user/init.sh, written by the test into the domain's
// home before it starts (the agent and daemon are not involved, so these
// tests exercise the sandbox and the broker alone). Call-path tests that use
// the real agent/daemon can reuse the fixture with `with_daemons`.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "event/loop.h"
#include "host/host.h"

namespace qrexec::host::testing {

// Skips the test unless running as root with bwrap installed.
#define QREXEC_REQUIRE_ROOT_AND_BWRAP()                                          \
  do {                                                                           \
    if (!::qrexec::host::testing::HaveRootAndBwrap())                            \
      GTEST_SKIP() << "needs root and bubblewrap";                               \
  } while (0)

bool HaveRootAndBwrap();

class HostFixture : public ::testing::Test {
 protected:
  void SetUp() override;
  void TearDown() override;

  // Creates the host from `config_text` ([[domain]] tables; [host] is
  // added). Returns false (with a test failure) on errors.
  bool MakeHost(const std::string& config_text, bool with_daemons = false);
  // Writes `script` as init.sh into the persistent home of `name`.
  void WriteInit(const std::string& name, const std::string& script);
  std::string HomeOf(const std::string& name) const;
  // Starts a domain and runs the loop until it is running.
  ::testing::AssertionResult StartDomain(const std::string& name);
  // Runs the loop until `path` exists (or a generous limit).
  bool WaitForFile(const std::string& path, std::chrono::milliseconds limit = std::chrono::seconds(20));
  std::string ReadFile(const std::string& path) const;
  void Spin(std::chrono::milliseconds how_long);
  // Host processes whose command line contains `marker`.
  static std::vector<pid_t> ProcessesWith(const std::string& marker);
  // Mount points (in our mount namespace) under `prefix`.
  static std::vector<std::string> MountsUnder(const std::string& prefix);

  std::string dir_;
  event::Loop loop_;
  std::unique_ptr<Host> host_;
};

}  // namespace qrexec::host::testing
