// Unit tests of qrexec-pam-session's command line and login-shell argv. The
// PAM session itself is tested as root in tests/agent_side/pam_test.cc.
#include "agent/pam_session.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace qrexec::agent {
namespace {

std::optional<PamSessionOptions> Parse(std::vector<std::string> args) {
  args.insert(args.begin(), "qrexec-pam-session");
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  return ParsePamSessionArgs(static_cast<int>(args.size()), argv.data());
}

TEST(PamSessionArgs, ProgramModeTakesEverythingAfterTheDoubleDash) {
  auto options = Parse({"alice", "--", "/srv/test.Echo", "--not-an-option", "x"});
  ASSERT_TRUE(options);
  EXPECT_EQ(options->user, "alice");
  EXPECT_FALSE(options->shell_command);
  EXPECT_FALSE(options->pam_confdir);
  EXPECT_EQ(options->command, (std::vector<std::string>{"/srv/test.Echo", "--not-an-option", "x"}));
}

TEST(PamSessionArgs, ConfdirAndShellCommandAreOptionsBeforeTheUser) {
  auto options = Parse({"--pam-confdir=/tmp/pam", "--shell-command", "bob", "--", "echo hi"});
  ASSERT_TRUE(options);
  EXPECT_EQ(options->pam_confdir, "/tmp/pam");
  EXPECT_TRUE(options->shell_command);
  EXPECT_EQ(options->command, std::vector<std::string>{"echo hi"});
}

TEST(PamSessionArgs, MalformedCommandLinesAreRefused) {
  EXPECT_FALSE(Parse({}));
  EXPECT_FALSE(Parse({"alice"}));
  EXPECT_FALSE(Parse({"alice", "--"}));                               // no command
  EXPECT_FALSE(Parse({"alice", "/bin/true"}));                        // no "--"
  EXPECT_FALSE(Parse({"", "--", "/bin/true"}));                       // empty user
  EXPECT_FALSE(Parse({"--bogus", "alice", "--", "x"}));               // unknown option
  EXPECT_FALSE(Parse({"--shell-command", "alice", "--", "a", "b"}));  // one command only
}

TEST(PamSessionArgs, OptionsAfterTheUserAreNotOptions) {
  // "+" parsing: a --pam-confdir after USER is not ours (and makes the
  // command line malformed, since "--" must follow USER).
  EXPECT_FALSE(Parse({"alice", "--pam-confdir=/tmp", "--", "x"}));
}

TEST(LoginShell, ProgramModeExecsTheProgramFromALoginShell) {
  PamSessionOptions options{"alice", std::nullopt, false, {"/srv/svc", "arg with space"}};
  EXPECT_EQ(
      LoginShellArgv("/bin/sh", options),
      (std::vector<std::string>{"-sh", "-c", "exec \"$0\" \"$@\"", "/srv/svc", "arg with space"}));
}

TEST(LoginShell, ShellCommandModeRunsTheCommandInTheUsersLoginShell) {
  PamSessionOptions options{"alice", std::nullopt, true, {"echo hi"}};
  EXPECT_EQ(LoginShellArgv("/usr/bin/bash", options),
            (std::vector<std::string>{"-bash", "-c", "echo hi"}));
  options.command = {"-x"};
  EXPECT_EQ(LoginShellArgv("/bin/sh", options),
            (std::vector<std::string>{"-sh", "-c", "--", "-x"}));
}

}  // namespace
}  // namespace qrexec::agent
