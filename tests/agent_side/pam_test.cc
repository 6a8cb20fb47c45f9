// The PAM session of services (docs/pam.md), end to end: the test plays dom0
// against the real qrexec-agent (as root), which starts services for another
// user through the real qrexec-pam-session. The PAM stack is the test's own
// (--pam-confdir): pam_exec logs "open_session USER" / "close_session USER"
// to a file the service also writes to, and pam_env sets a variable, so the
// test sees the session opened before the service ran, closed after it, and
// the PAM environment reaching the service.
//
// Needs root, useradd/userdel and the PAM modules of libpam-modules; skips
// with a message otherwise. A throw-away user is created for each test, with
// its home in the test directory (its .profile shows that a login shell ran).
#include <gtest/gtest.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <optional>
#include <sstream>

#include "agent_fixture.h"

namespace qrexec::harness::agent_side {
namespace {

constexpr const char* kPamModuleDirs[] = {"/lib/x86_64-linux-gnu/security",
                                          "/usr/lib/x86_64-linux-gnu/security", "/lib/security",
                                          "/usr/lib/security"};

bool HavePamModule(const std::string& name) {
  for (const char* dir : kPamModuleDirs)
    if (PathExists(std::string(dir) + "/" + name)) return true;
  return false;
}

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

class PamSession : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root: opens PAM sessions and switches users";
    if (!PathExists(BinPath("qrexec-pam-session"))) GTEST_SKIP() << "built without libpam";
    if (std::system("command -v useradd >/dev/null && command -v userdel >/dev/null") != 0)
      GTEST_SKIP() << "no useradd/userdel";
    for (const char* module : {"pam_exec.so", "pam_env.so", "pam_permit.so", "pam_deny.so"})
      if (!HavePamModule(module)) GTEST_SKIP() << "no PAM module " << module;

    ::chmod(dir_.path().c_str(), 0755);
    user_ = "qrxpam" + std::to_string(::getpid() % 100000);
    home_ = dir_ / "home";
    std::string add = "useradd -M -N -d '" + home_ + "' -s /bin/bash " + user_;
    ASSERT_EQ(std::system(add.c_str()), 0) << add;
    created_user_ = true;
    const passwd* pw = ::getpwnam(user_.c_str());
    ASSERT_NE(pw, nullptr);
    std::filesystem::create_directories(home_);
    ASSERT_EQ(::chown(home_.c_str(), pw->pw_uid, pw->pw_gid), 0);
    WriteFile(home_ + "/.profile", "export PROFILE_RAN=yes\n");

    log_ = dir_ / "session.log";
    WriteFile(log_, "", 0666);
    ::chmod(log_.c_str(), 0666);
    WriteScript(dir_ / "hook", "echo \"$PAM_TYPE $PAM_USER\" >> '" + log_ + "'\n");
    WriteFile(dir_ / "env.conf", "PAM_TEST_VAR DEFAULT=from-pam\n");
    WritePamStack(dir_ / "pam.d", "account  required pam_permit.so\n");
    std::filesystem::create_directories(dir_ / "rpc");
    ::chmod((dir_ / "rpc").c_str(), 0755);
  }
  void TearDown() override {
    agent_.reset();
    if (created_user_) {
      std::string del = "userdel " + user_;
      EXPECT_EQ(std::system(del.c_str()), 0) << del;
    }
  }

  // The qrexec stack: `account` lines as given, the rest fixed.
  void WritePamStack(const std::string& confdir, const std::string& account) {
    WriteFile(confdir + "/qrexec", "auth     required pam_permit.so\n" + account +
                                       "session  required pam_exec.so " + (dir_ / "hook") +
                                       "\n"
                                       "session  required pam_env.so conffile=" +
                                       (dir_ / "env.conf") + " readenv=0\n");
  }
  void StartAgent(const std::string& confdir) {
    agent_.emplace(dir_, kVmDomain, std::map<std::string, std::string>{},
                   std::vector<std::string>{"--no-fork-server", "--pam-session",
                                            "--pam-session-helper=" + BinPath("qrexec-pam-session"),
                                            "--pam-confdir=" + confdir});
    agent_->ConnectDom0();
  }
  void Service(const std::string& name, const std::string& body) {
    WriteScript(dir_ / ("rpc/" + name), body);
  }
  std::vector<std::string> SessionLog() { return Lines(ReadFile(log_)); }

  TempDir dir_;
  std::string user_, home_, log_;
  bool created_user_ = false;
  std::optional<AgentUnderTest> agent_;
};

TEST_F(PamSession, ServiceRunsAsTheUserInsideASessionOpenedAndClosedAroundIt) {
  StartAgent(dir_ / "pam.d");
  Service("test.Who",
          "echo \"service $(id -un)\" >> '" + log_ +
              "'\n"
              "echo \"$(id -un) $HOME $USER $LOGNAME $(pwd)\"\n"
              "echo \"pam=$PAM_TEST_VAR profile=$PROFILE_RAN remote=$QREXEC_REMOTE_DOMAIN\"\n"
              "cat\n"
              "exit 3\n");
  auto output = RunCall(*agent_, dir_, user_ + ":QUBESRPC test.Who+ work", "stdin data");
  EXPECT_EQ(output.out, user_ + " " + home_ + " " + user_ + " " + user_ + " " + home_ + "\n" +
                            "pam=from-pam profile=yes remote=work\nstdin data");
  EXPECT_EQ(output.exit_code, 3);
  // The exit code is sent once the helper exited, i.e. after the session closed.
  EXPECT_EQ(SessionLog(), (std::vector<std::string>{"open_session " + user_, "service " + user_,
                                                    "close_session " + user_}));
  ExpectTerminated(agent_->control(), 0, 513);
}

TEST_F(PamSession, ASignalThatKillsTheServiceIsReportedAs128PlusItsNumber) {
  StartAgent(dir_ / "pam.d");
  Service("test.Die", "kill -TERM $$\n");
  auto output = RunCall(*agent_, dir_, user_ + ":QUBESRPC test.Die+ work");
  EXPECT_EQ(output.exit_code, 128 + SIGTERM);
  EXPECT_EQ(SessionLog(),
            (std::vector<std::string>{"open_session " + user_, "close_session " + user_}));
}

TEST_F(PamSession, TheServiceArgumentReachesTheServiceUnchanged) {
  StartAgent(dir_ / "pam.d");
  Service("test.Arg", "printf '%s|' \"$0\" \"$@\"\n");
  auto output = RunCall(*agent_, dir_, user_ + ":QUBESRPC test.Arg+a$b;c work");
  EXPECT_EQ(output.out, (dir_ / "rpc/test.Arg") + "|a$b;c|");
  EXPECT_EQ(output.exit_code, 0);
}

TEST_F(PamSession, LegacyCommandsRunInTheUsersLoginShell) {
  StartAgent(dir_ / "pam.d");
  auto output = RunCall(*agent_, dir_, user_ + ":echo \"$0 $PROFILE_RAN\"; exit 7");
  EXPECT_EQ(output.out, "-bash yes\n");
  EXPECT_EQ(output.exit_code, 7);
}

TEST_F(PamSession, AnAccountTheStackRefusesGetsNoServiceAnd125) {
  WritePamStack(dir_ / "deny.d", "account  required pam_deny.so\n");
  StartAgent(dir_ / "deny.d");
  Service("test.Who", "echo \"service $(id -un)\" >> '" + log_ + "'\necho ran\n");
  auto output = RunCall(*agent_, dir_, user_ + ":QUBESRPC test.Who+ work");
  EXPECT_EQ(output.out, "");
  EXPECT_EQ(output.exit_code, 125);
  EXPECT_EQ(SessionLog(), std::vector<std::string>{});
}

TEST_F(PamSession, TheAgentsOwnUsersServicesOpenNoSession) {
  StartAgent(dir_ / "pam.d");
  Service("test.Who", "id -un\n");
  auto output = RunCall(*agent_, dir_, "root:QUBESRPC test.Who+ work");
  EXPECT_EQ(output.out, "root\n");
  EXPECT_EQ(SessionLog(), std::vector<std::string>{});
}

// A fork server started through the helper holds the user's session: the
// agent hands it the calls, and no further session is opened for them.
TEST_F(PamSession, AForkServerStartedThroughTheHelperRunsCallsInItsOneSession) {
  std::string sockets = dir_ / "fs";
  std::filesystem::create_directories(sockets);
  ::chmod(sockets.c_str(), 0777);
  SpawnOptions options;
  options.argv = {BinPath("qrexec-pam-session"), "--pam-confdir=" + (dir_ / "pam.d"), user_, "--",
                  BinPath("qrexec-fork-server"), sockets + "/fs." + user_ + ".sock"};
  options.env = VmEnvironment(dir_);
  options.env["QREXEC_FORK_SERVER_FOREGROUND"] = "1";
  options.stdin_mode = Stdio::kNull;
  options.stdout_mode = Stdio::kNull;
  options.stderr_mode = Stdio::kInherit;
  auto server = Process::Spawn(options);
  ASSERT_TRUE(server);
  ASSERT_TRUE(ConnectUnixRetry(sockets + "/fs." + user_ + ".sock"))
      << "the fork server did not start";

  agent_.emplace(dir_, kVmDomain, std::map<std::string, std::string>{},
                 std::vector<std::string>{"--pam-session",
                                          "--pam-session-helper=" + BinPath("qrexec-pam-session"),
                                          "--pam-confdir=" + (dir_ / "pam.d"),
                                          "--fork-server-socket=" + sockets + "/fs.%s.sock"});
  agent_->ConnectDom0();
  Service("test.Who", "echo \"service $(id -un)\" >> '" + log_ + "'\nid -un\n");
  // The fork server's handler (the user) joins the data vchan the test
  // listens on: let it connect.
  mode_t old_umask = ::umask(0);
  auto first = RunCall(*agent_, dir_, user_ + ":QUBESRPC test.Who+ work", "", 513);
  auto second = RunCall(*agent_, dir_, user_ + ":QUBESRPC test.Who+ work", "", 514);
  ::umask(old_umask);
  EXPECT_EQ(first.out, user_ + "\n");
  EXPECT_EQ(second.out, user_ + "\n");
  EXPECT_EQ(SessionLog(), (std::vector<std::string>{"open_session " + user_, "service " + user_,
                                                    "service " + user_}));
  server->Kill(SIGTERM);  // passed on to the fork server; then the session closes
  EXPECT_EQ(server->Wait(), 128 + SIGTERM);
  EXPECT_EQ(SessionLog().back(), "close_session " + user_);
}

TEST_F(PamSession, WithNoPamSessionOtherUsersServicesAreExecutedDirectly) {
  agent_.emplace(dir_);  // the fixture's default: --no-pam-session
  agent_->ConnectDom0();
  Service("test.Who", "echo \"$(id -un) profile=$PROFILE_RAN\"\n");
  auto output = RunCall(*agent_, dir_, user_ + ":QUBESRPC test.Who+ work");
  EXPECT_EQ(output.out, user_ + " profile=\n");
  EXPECT_EQ(SessionLog(), std::vector<std::string>{});
}

}  // namespace
}  // namespace qrexec::harness::agent_side
