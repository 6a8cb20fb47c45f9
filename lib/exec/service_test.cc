#include "exec/service.h"

#include <arpa/inet.h>
#include <grp.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <functional>
#include <map>

#include <gtest/gtest.h>

#include "base/sys.h"
#include "exec/socket_service.h"
#include "exec/test_util.h"

namespace qrexec::exec {
namespace {

using testing::ReadAll;
using testing::ReadFile;
using testing::TempDir;
using testing::WriteFile;
using testing::WriteScript;

std::string CurrentUser() {
  struct passwd* pw = ::getpwuid(::geteuid());
  return pw != nullptr ? pw->pw_name : "";
}

class ServiceTest : public ::testing::Test {
 protected:
  ServiceTest() : services_(dir_.MakeDir("rpc")), configs_(dir_.MakeDir("config")) {
    ctx_.service_path = SearchPath{{services_}};
    ctx_.config_path = SearchPath{{configs_}};
    ctx_.agent_pid = 4242;
    base_env_strings_ = {"PATH=/usr/bin:/bin", "HOME=/root-test", "QREXEC_SERVICE_PATH=/keep",
                         "QREXEC_AGENT_PID=1", "QREXEC_REMOTE_DOMAIN=stale", "QREXECX=gone",
                         "QREXEC_SERVICE_ARGUMENT=stale", "OTHER=kept"};
    for (auto& s : base_env_strings_) base_env_.push_back(s.data());
    base_env_.push_back(nullptr);
    ctx_.base_environment = base_env_.data();
    user_ = CurrentUser();
  }

  // Runs a command to completion; returns {exit code, stdout}.
  std::pair<int, std::string> Run(const std::string& command, UserPrefix prefix = UserPrefix::kPresent,
                                  const std::string& stdin_text = "") {
    StartedService started = ParseAndStartService(command, prefix, ctx_, StartOptions{});
    if (auto* failure = std::get_if<StartFailure>(&started)) return {failure->exit_code, ""};
    auto* process = std::get_if<StartedProcess>(&started);
    if (process == nullptr) {
      ADD_FAILURE() << "not a process";
      return {-1, ""};
    }
    EXPECT_TRUE(sys::WriteAll(process->child.stdin_fd().get(), stdin_text).has_value());
    process->child.stdin_fd().reset();
    std::string out = ReadAll(process->child.stdout_fd().get());
    auto status = process->child.Wait();
    EXPECT_TRUE(status.has_value());
    return {status ? QrexecExitCode(*status) : -1, out};
  }

  static std::map<std::string, std::string> ParseEnv(const std::string& dump) {
    std::map<std::string, std::string> env;
    size_t start = 0;
    while (start < dump.size()) {
      size_t end = dump.find('\n', start);
      if (end == std::string::npos) end = dump.size();
      std::string line = dump.substr(start, end - start);
      size_t eq = line.find('=');
      if (eq != std::string::npos) env[line.substr(0, eq)] = line.substr(eq + 1);
      start = end + 1;
    }
    return env;
  }

  TempDir dir_;
  std::string services_, configs_;
  ExecContext ctx_;
  std::vector<std::string> base_env_strings_;
  std::vector<char*> base_env_;
  std::string user_;
};

TEST_F(ServiceTest, ExecutableServiceGetsTheSection46Environment) {
  WriteScript(services_ + "/test.Env", "exec /usr/bin/env");
  auto [code, out] = Run(user_ + ":QUBESRPC test.Env+arg1 work");
  EXPECT_EQ(code, 0);
  auto env = ParseEnv(out);
  EXPECT_EQ(env["QREXEC_SERVICE_FULL_NAME"], "test.Env+arg1");
  EXPECT_EQ(env["QREXEC_REMOTE_DOMAIN"], "work");
  EXPECT_EQ(env["QREXEC_SERVICE_ARGUMENT"], "arg1");
  ASSERT_EQ(env.count("QREXEC_REQUESTED_TARGET_TYPE"), 1u);
  EXPECT_EQ(env["QREXEC_REQUESTED_TARGET_TYPE"], "");
  EXPECT_EQ(env["QREXEC_AGENT_PID"], "4242");
  EXPECT_EQ(env["QREXEC_SERVICE_PATH"], "/keep");
  EXPECT_EQ(env.count("QREXECX"), 0u);
  EXPECT_EQ(env.count("QREXEC_REQUESTED_TARGET"), 0u);
  EXPECT_EQ(env.count("QREXEC_REQUESTED_TARGET_KEYWORD"), 0u);
  EXPECT_EQ(env["OTHER"], "kept");
  EXPECT_EQ(env["PATH"], "/usr/bin:/bin");
}

TEST_F(ServiceTest, ServiceArgumentIsSetOnlyWhenAPlusWasPresent) {
  WriteScript(services_ + "/test.Env", "exec /usr/bin/env");
  auto env = ParseEnv(Run(user_ + ":QUBESRPC test.Env work").second);
  EXPECT_EQ(env["QREXEC_SERVICE_FULL_NAME"], "test.Env");
  EXPECT_EQ(env.count("QREXEC_SERVICE_ARGUMENT"), 0u);
  env = ParseEnv(Run(user_ + ":QUBESRPC test.Env+ work").second);
  EXPECT_EQ(env["QREXEC_SERVICE_FULL_NAME"], "test.Env+");
  ASSERT_EQ(env.count("QREXEC_SERVICE_ARGUMENT"), 1u);
  EXPECT_EQ(env["QREXEC_SERVICE_ARGUMENT"], "");
}

TEST_F(ServiceTest, Dom0ServicesSeeTheRequestedTarget) {
  WriteScript(services_ + "/test.Env", "exec /usr/bin/env");
  auto env = ParseEnv(Run("QUBESRPC test.Env+a work name dom0", UserPrefix::kAbsent).second);
  EXPECT_EQ(env["QREXEC_REQUESTED_TARGET_TYPE"], "name");
  EXPECT_EQ(env["QREXEC_REQUESTED_TARGET"], "dom0");
  EXPECT_EQ(env.count("QREXEC_REQUESTED_TARGET_KEYWORD"), 0u);
  env = ParseEnv(Run("QUBESRPC test.Env+a work keyword adminvm", UserPrefix::kAbsent).second);
  EXPECT_EQ(env["QREXEC_REQUESTED_TARGET_TYPE"], "keyword");
  EXPECT_EQ(env["QREXEC_REQUESTED_TARGET_KEYWORD"], "adminvm");
  EXPECT_EQ(env.count("QREXEC_REQUESTED_TARGET"), 0u);
}

TEST_F(ServiceTest, ArgvHasTheArgumentOnlyWhenNonEmpty) {
  WriteScript(services_ + "/test.Argv", "echo \"$#\"; for a in \"$0\" \"$@\"; do echo \"[$a]\"; done");
  EXPECT_EQ(Run(user_ + ":QUBESRPC test.Argv+x+y work").second,
            "1\n[" + services_ + "/test.Argv]\n[x+y]\n");
  EXPECT_EQ(Run(user_ + ":QUBESRPC test.Argv+ work").second, "0\n[" + services_ + "/test.Argv]\n");
  EXPECT_EQ(Run(user_ + ":QUBESRPC test.Argv work").second, "0\n[" + services_ + "/test.Argv]\n");
}

TEST_F(ServiceTest, TheArgumentIsNeverInterpretedByAShell) {
  WriteScript(services_ + "/test.Argv", "printf '%s\\n' \"$1\"");
  EXPECT_EQ(Run(user_ + ":QUBESRPC test.Argv+$(id);`id` work").second, "$(id);`id`\n");
}

TEST_F(ServiceTest, ExitCodesAreReported) {
  WriteScript(services_ + "/test.Exit", "exit $1");
  EXPECT_EQ(Run(user_ + ":QUBESRPC test.Exit+0 work").first, 0);
  EXPECT_EQ(Run(user_ + ":QUBESRPC test.Exit+7 work").first, 7);
  EXPECT_EQ(Run(user_ + ":QUBESRPC test.Exit+127 work").first, 127);
  WriteScript(services_ + "/test.Kill", "kill -KILL $$");
  EXPECT_EQ(Run(user_ + ":QUBESRPC test.Kill work").first, 128 + SIGKILL);
}

TEST_F(ServiceTest, MissingServiceIs127AndBadCommandsAre125) {
  EXPECT_EQ(Run(user_ + ":QUBESRPC test.Missing work").first, 127);
  EXPECT_EQ(Run(user_ + ":QUBESRPC test.Missing").first, 125);
  EXPECT_EQ(Run("no user prefix").first, 125);
  WriteFile(services_ + "/test.NotExec", "#!/bin/sh\n", 0644);
  EXPECT_EQ(Run(user_ + ":QUBESRPC test.NotExec work").first, 125);
  // Interpreter missing: execve gives ENOENT -> 127.
  WriteFile(services_ + "/test.NoInterp", "#!/nonexistent/interpreter\n", 0755);
  EXPECT_EQ(Run(user_ + ":QUBESRPC test.NoInterp work").first, 127);
}

TEST_F(ServiceTest, BrokenRpcConfigFailsTheCallWith125) {
  WriteScript(services_ + "/test.Ok", "exit 0");
  WriteFile(configs_ + "/test.Ok", "wait-for-session = \"yes\"\n");
  EXPECT_EQ(Run(user_ + ":QUBESRPC test.Ok work").first, 125);
  ctx_.load_rpc_config = false;  // the fork server does not read it
  EXPECT_EQ(Run(user_ + ":QUBESRPC test.Ok work").first, 0);
}

TEST_F(ServiceTest, PlanReflectsTheRpcConfig) {
  WriteScript(services_ + "/test.Ok", "exit 0");
  WriteFile(configs_ + "/test.Ok+gui", "wait-for-session = 1\n");
  WriteFile(configs_ + "/test.Ok+sock", "exit-on-client-eof = true\n");
  WriteFile(configs_ + "/test.Ok+root", "force-user = 'root'\n");

  auto plan = PlanService(*ParseCommand("u:QUBESRPC test.Ok+gui work"), ctx_);
  ASSERT_TRUE(plan.has_value());
  EXPECT_TRUE(plan->NeedsWaitForSession());
  EXPECT_TRUE(plan->MayUseForkServer());
  EXPECT_EQ(plan->effective_user, "u");

  plan = PlanService(*ParseCommand("u:nogui:QUBESRPC test.Ok+gui work"), ctx_);
  ASSERT_TRUE(plan.has_value());
  EXPECT_FALSE(plan->NeedsWaitForSession());
  EXPECT_FALSE(plan->MayUseForkServer());

  plan = PlanService(*ParseCommand("u:QUBESRPC test.Ok+sock work"), ctx_);
  ASSERT_TRUE(plan.has_value());
  EXPECT_FALSE(plan->MayUseForkServer());

  plan = PlanService(*ParseCommand("u:QUBESRPC test.Ok+root work"), ctx_);
  ASSERT_TRUE(plan.has_value());
  EXPECT_EQ(plan->effective_user, "root");
  ASSERT_TRUE(plan->lookup.has_value());
  EXPECT_TRUE(std::holds_alternative<ExecutableService>(*plan->lookup));
}

// Runs `body` in a child process that dropped root to nobody; returns its exit code.
int RunAsNobody(const std::function<int()>& body) {
  pid_t pid = ::fork();
  if (pid == 0) {
    struct passwd* pw = ::getpwnam("nobody");
    if (pw == nullptr || ::setgroups(0, nullptr) < 0 || ::setgid(pw->pw_gid) < 0 ||
        ::setuid(pw->pw_uid) < 0)
      ::_exit(200);
    ::_exit(body());
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 201;
}

TEST_F(ServiceTest, NotRootAndAnotherUserIs125) {
  WriteScript(services_ + "/test.Ok", "exit 0");
  ::chmod(dir_.path().c_str(), 0755);
  ::chmod(services_.c_str(), 0755);
  ::chmod(configs_.c_str(), 0755);
  auto check = [&]() -> int {
    StartedService s = ParseAndStartService(CurrentUser() == "root" ? "root:QUBESRPC test.Ok work"
                                                                    : "root:QUBESRPC test.Ok work",
                                            UserPrefix::kPresent, ctx_, StartOptions{});
    auto* failure = std::get_if<StartFailure>(&s);
    return failure != nullptr ? failure->exit_code : 0;
  };
  if (::geteuid() == 0) {
    EXPECT_EQ(RunAsNobody(check), 125);
    // force-user with a mismatching user, also 125.
    WriteFile(configs_ + "/test.Ok", "force-user = 'root'\n");
    auto check_forced = [&]() -> int {
      StartedService s = ParseAndStartService("nobody:QUBESRPC test.Ok work", UserPrefix::kPresent,
                                              ctx_, StartOptions{});
      auto* failure = std::get_if<StartFailure>(&s);
      if (failure != nullptr) return failure->exit_code;
      auto status = std::get<StartedProcess>(s).child.Wait();
      return status ? 100 + QrexecExitCode(*status) : 99;
    };
    EXPECT_EQ(RunAsNobody(check_forced), 125);
  } else {
    EXPECT_EQ(check(), 125);
  }
}

TEST_F(ServiceTest, RootSwitchesToTheRequestedUser) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root: runs a service as nobody";
  ::chmod(dir_.path().c_str(), 0755);
  ::chmod(services_.c_str(), 0755);
  WriteScript(services_ + "/test.Id", "id -u; echo \"$USER $HOME\"; /usr/bin/env | grep -c '^QREXEC_AGENT_PID='");
  struct passwd* pw = ::getpwnam("nobody");
  ASSERT_NE(pw, nullptr);
  std::string home = pw->pw_dir;
  auto [code, out] = Run("nobody:QUBESRPC test.Id work");
  EXPECT_EQ(code, 0);
  EXPECT_EQ(out, std::to_string(pw->pw_uid) + "\nnobody " + home + "\n1\n");
}

TEST(PamSessionArgv, NamesTheUserThenTheCommandAfterADoubleDash) {
  EXPECT_EQ(PamSessionArgv({"/h", ""}, "alice", false, {"/srv/x", "arg"}),
            (std::vector<std::string>{"/h", "alice", "--", "/srv/x", "arg"}));
  EXPECT_EQ(PamSessionArgv({"/h", "/t/pam.d"}, "bob", true, {"echo hi"}),
            (std::vector<std::string>{"/h", "--pam-confdir=/t/pam.d", "--shell-command", "bob",
                                      "--", "echo hi"}));
}

// The helper here is a stand-in that prints what it was given; the real one
// is tested in agent/pam_session_test.cc and tests/agent_side/pam_test.cc.
class PamRouting : public ServiceTest {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root: only root switches users";
    if (::getpwnam("nobody") == nullptr) GTEST_SKIP() << "no user nobody";
    helper_ = dir_.path() + "/helper";
    WriteScript(helper_, "echo \"uid=$(id -u) $*\"; echo \"pid=$QREXEC_AGENT_PID\"");
    ctx_.pam_session = PamSessionHelper{helper_, ""};
  }
  std::string helper_;
};

TEST_F(PamRouting, AnotherUsersServiceStartsThroughTheHelperAsRoot) {
  WriteScript(services_ + "/test.Svc", "echo direct");
  auto [code, out] = Run("nobody:QUBESRPC test.Svc+arg work");
  EXPECT_EQ(code, 0);
  EXPECT_EQ(out, "uid=0 nobody -- " + services_ + "/test.Svc arg\npid=4242\n");
}

TEST_F(PamRouting, LegacyCommandsGoThroughTheHelpersShellCommandMode) {
  auto [code, out] = Run("nobody:echo hi");
  EXPECT_EQ(code, 0);
  EXPECT_EQ(out, "uid=0 --shell-command nobody -- echo hi\npid=4242\n");
}

TEST_F(PamRouting, OurOwnUsersServiceIsExecutedDirectly) {
  WriteScript(services_ + "/test.Svc", "echo direct");
  auto [code, out] = Run(user_ + ":QUBESRPC test.Svc+ work");
  EXPECT_EQ(code, 0);
  EXPECT_EQ(out, "direct\n");
}

TEST_F(PamRouting, AMissingHelperFailsTheCallWith125) {
  WriteScript(services_ + "/test.Svc", "echo direct");
  ctx_.pam_session->path = dir_.path() + "/no-such-helper";
  EXPECT_EQ(Run("nobody:QUBESRPC test.Svc+ work").first, 125);
}

TEST_F(ServiceTest, LegacyCommandStartingWithADashIsNotAShellOption) {
  // Run as `sh -c -- -x`: the shell looks for a command named "-x" (127)
  // instead of taking -x as its own option.
  EXPECT_EQ(Run(user_ + ":-x").first, 127);
}

TEST_F(ServiceTest, LegacyCommandsRunThroughTheShell) {
  auto [code, out] = Run(user_ + ":echo \"$QREXEC_AGENT_PID\"; echo $OTHER; exit 5");
  EXPECT_EQ(code, 5);
  EXPECT_EQ(out, "4242\nkept\n");
}

TEST_F(ServiceTest, SocketServiceReceivesTheDescriptorHeader) {
  auto listener = sys::UnixListen(services_ + "/test.Socket");
  ASSERT_TRUE(listener.has_value());
  StartedService started =
      ParseAndStartService(user_ + ":QUBESRPC test.Socket+arg work", UserPrefix::kPresent, ctx_, {});
  ASSERT_TRUE(std::holds_alternative<StartedSocket>(started));
  auto& sock = std::get<StartedSocket>(started);
  EXPECT_FALSE(sock.tcp);
  auto peer = sys::Accept(listener->get());
  ASSERT_TRUE(peer.has_value());
  ASSERT_TRUE(sys::WriteAll(sock.socket.get(), "data").has_value());
  ::shutdown(sock.socket.get(), SHUT_WR);
  EXPECT_EQ(ReadAll(peer->get()), std::string("test.Socket+arg work\0data", 25));
}

TEST_F(ServiceTest, Dom0SocketServiceHeaderHasTheTargetTokens) {
  auto listener = sys::UnixListen(services_ + "/test.Socket");
  ASSERT_TRUE(listener.has_value());
  StartedService started = ParseAndStartService("QUBESRPC test.Socket work keyword adminvm",
                                                UserPrefix::kAbsent, ctx_, {});
  ASSERT_TRUE(std::holds_alternative<StartedSocket>(started));
  auto peer = sys::Accept(listener->get());
  ASSERT_TRUE(peer.has_value());
  std::get<StartedSocket>(started).socket.reset();
  EXPECT_EQ(ReadAll(peer->get()), std::string("test.Socket work keyword adminvm\0", 33));
}

TEST_F(ServiceTest, SkipServiceDescriptorSendsNothing) {
  auto listener = sys::UnixListen(services_ + "/test.Socket");
  ASSERT_TRUE(listener.has_value());
  WriteFile(configs_ + "/test.Socket", "skip-service-descriptor = true\n");
  StartedService started =
      ParseAndStartService(user_ + ":QUBESRPC test.Socket work", UserPrefix::kPresent, ctx_, {});
  ASSERT_TRUE(std::holds_alternative<StartedSocket>(started));
  auto peer = sys::Accept(listener->get());
  ASSERT_TRUE(peer.has_value());
  std::get<StartedSocket>(started).socket.reset();
  EXPECT_EQ(ReadAll(peer->get()), "");
}

TEST_F(ServiceTest, SocketServicesCanBeForbidden) {
  auto listener = sys::UnixListen(services_ + "/test.Socket");
  ASSERT_TRUE(listener.has_value());
  StartOptions options;
  options.allow_socket_services = false;
  StartedService started =
      ParseAndStartService(user_ + ":QUBESRPC test.Socket work", UserPrefix::kPresent, ctx_, options);
  ASSERT_TRUE(std::holds_alternative<StartFailure>(started));
  EXPECT_EQ(std::get<StartFailure>(started).exit_code, 125);
}

TEST_F(ServiceTest, UnconnectableSocketIs125) {
  {
    auto listener = sys::UnixListen(services_ + "/test.Socket");
    ASSERT_TRUE(listener.has_value());
  }  // closed: the socket file stays, connect() is refused
  StartedService started =
      ParseAndStartService(user_ + ":QUBESRPC test.Socket work", UserPrefix::kPresent, ctx_, {});
  ASSERT_TRUE(std::holds_alternative<StartFailure>(started));
  EXPECT_EQ(std::get<StartFailure>(started).exit_code, 125);
}

TEST(ConnectUnixService, ReachesPathsLongerThanSunPath) {
  TempDir dir;
  std::string deep = dir.path();
  while (deep.size() < 150) deep = dir.MakeDir(deep.substr(dir.path().size()) + "/" + std::string(40, 'd'));
  std::string path = deep + "/service.sock";
  ASSERT_GT(path.size(), sizeof(sockaddr_un{}.sun_path));
  // Bind through a short symlink to the deep directory.
  ASSERT_EQ(::symlink(deep.c_str(), (dir / "short").c_str()), 0);
  auto listener = sys::UnixListen(dir / "short/service.sock");
  ASSERT_TRUE(listener.has_value());
  auto fd = ConnectUnixService(path);
  ASSERT_TRUE(fd.has_value()) << fd.error().ToString();
  auto peer = sys::Accept(listener->get());
  EXPECT_TRUE(peer.has_value());
}

TEST_F(ServiceTest, TcpServiceConnectsAndSendsTheDescriptor) {
  UniqueFd listener(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  ASSERT_TRUE(listener.valid());
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(listener.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::listen(listener.get(), 4), 0);
  socklen_t len = sizeof addr;
  ASSERT_EQ(::getsockname(listener.get(), reinterpret_cast<sockaddr*>(&addr), &len), 0);
  int port = ntohs(addr.sin_port);

  ASSERT_EQ(::symlink("/dev/tcp", (services_ + "/qubes.ConnectTCP").c_str()), 0);
  std::string command = user_ + ":QUBESRPC qubes.ConnectTCP+127.0.0.1+" + std::to_string(port) + " work";
  StartedService started = ParseAndStartService(command, UserPrefix::kPresent, ctx_, {});
  ASSERT_TRUE(std::holds_alternative<StartedSocket>(started))
      << std::get<StartFailure>(started).error.ToString();
  EXPECT_TRUE(std::get<StartedSocket>(started).tcp);
  UniqueFd peer(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
  ASSERT_TRUE(peer.valid());
  std::get<StartedSocket>(started).socket.reset();
  EXPECT_EQ(ReadAll(peer.get()),
            "qubes.ConnectTCP+127.0.0.1+" + std::to_string(port) + " work" + std::string(1, '\0'));

  // A bad argument never connects: 125.
  started = ParseAndStartService(user_ + ":QUBESRPC qubes.ConnectTCP+127.0.0.1+0" + std::to_string(port) + " work",
                                 UserPrefix::kPresent, ctx_, {});
  ASSERT_TRUE(std::holds_alternative<StartFailure>(started));
  EXPECT_EQ(std::get<StartFailure>(started).exit_code, 125);
}

TEST_F(ServiceTest, WaitForSessionGetsTheUserOnStdin) {
  std::string out = dir_ / "wfs.out";
  WriteScript(services_ + "/qubes.WaitForSession",
              "read user; echo \"$user $QREXEC_REMOTE_DOMAIN\" > " + out);
  ASSERT_TRUE(WaitForSession(ctx_, "alice", "work").has_value());
  EXPECT_EQ(ReadFile(out), "alice work\n");

  auto child = StartWaitForSession(ctx_, "bob", "dom0");
  ASSERT_TRUE(child.has_value());
  EXPECT_EQ(*child->Wait(), ExitStatus(Exited{0}));
  EXPECT_EQ(ReadFile(out), "bob dom0\n");
}

TEST_F(ServiceTest, WaitForSessionWithoutTheServiceDoesNotWait) {
  EXPECT_TRUE(WaitForSession(ctx_, "alice", "work").has_value());
  auto child = StartWaitForSession(ctx_, "alice", "work");
  ASSERT_FALSE(child.has_value());
  EXPECT_EQ(child.error().kind, ErrorKind::kNotFound);
}

TEST_F(ServiceTest, WaitForSessionThatIgnoresStdinDoesNotKillUs) {
  WriteScript(services_ + "/qubes.WaitForSession", "exit 3");
  EXPECT_TRUE(WaitForSession(ctx_, std::string(100000, 'u'), "work").has_value());
}

TEST(LoggerTag, IsDescriptorDashSource) {
  auto cmd = ParseCommand("u:QUBESRPC foo.Bar+arg work");
  ASSERT_TRUE(cmd.has_value());
  EXPECT_EQ(LoggerTag(*cmd->rpc), "foo.Bar+arg-work");
  cmd = ParseCommand("u:QUBESRPC foo.Bar\x1b[1m work");
  ASSERT_TRUE(cmd.has_value());
  EXPECT_EQ(LoggerTag(*cmd->rpc), "foo.Bar_[1m-work");
}

TEST(StartLogger, AcceptsLinesAndExits) {
  auto logger = StartLogger("qrexec-exec-test");
  if (!logger && logger.error().kind == ErrorKind::kNotFound) GTEST_SKIP() << "no logger";
  ASSERT_TRUE(logger.has_value()) << logger.error().ToString();
  ASSERT_TRUE(sys::WriteAll(logger->stdin_fd().get(), "test line\n").has_value());
  logger->stdin_fd().reset();
  // logger's exit status depends on syslog availability; it must just end.
  EXPECT_TRUE(logger->Wait().has_value());
}

}  // namespace
}  // namespace qrexec::exec
