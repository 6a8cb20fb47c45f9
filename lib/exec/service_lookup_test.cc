#include "exec/service_lookup.h"

#include <sys/socket.h>
#include <sys/un.h>

#include <gtest/gtest.h>

#include "base/sys.h"
#include "exec/test_util.h"

namespace qrexec::exec {
namespace {

using testing::TempDir;
using testing::WriteFile;
using testing::WriteScript;

class LookupTest : public ::testing::Test {
 protected:
  LookupTest() : d1_(dir_.MakeDir("d1")), d2_(dir_.MakeDir("d2")) {
    path_.dirs = {d1_, d2_};
  }
  std::string Found(std::string_view name, const std::optional<std::string>& arg) {
    ServiceLookup lookup = LookupService(path_, name, arg);
    if (auto* exe = std::get_if<ExecutableService>(&lookup)) return exe->path;
    if (std::holds_alternative<ServiceNotFound>(lookup)) return "<not found>";
    if (std::holds_alternative<ServiceProblem>(lookup)) return "<problem>";
    if (std::holds_alternative<SocketService>(lookup)) return "<socket>";
    return "<tcp>";
  }

  TempDir dir_;
  std::string d1_, d2_;
  SearchPath path_;
};

TEST(SearchPath, SplitsOnColonsAndSkipsEmptyComponents) {
  EXPECT_EQ(SearchPath::Parse("/a::/b:").dirs, (std::vector<std::string>{"/a", "/b"}));
  EXPECT_TRUE(SearchPath::Parse("").dirs.empty());
}

TEST(SearchPath, ComesFromTheEnvironmentOrTheDefault) {
  ::unsetenv("QREXEC_SERVICE_PATH");
  EXPECT_EQ(SearchPath::ServicesFromEnvironment().dirs,
            (std::vector<std::string>{"/run/qubes-rpc", "/usr/local/etc/qubes-rpc", "/etc/qubes-rpc"}));
  ::setenv("QREXEC_SERVICE_PATH", "/x:/y", 1);
  EXPECT_EQ(SearchPath::ServicesFromEnvironment().dirs, (std::vector<std::string>{"/x", "/y"}));
  ::unsetenv("QREXEC_SERVICE_PATH");
  ::unsetenv("QUBES_RPC_CONFIG_PATH");
  EXPECT_EQ(SearchPath::RpcConfigFromEnvironment().dirs.size(), 3u);
  EXPECT_EQ(SearchPath::RpcConfigFromEnvironment().dirs[0], "/run/qubes/rpc-config");
}

TEST_F(LookupTest, PrefersServicePlusArgumentInAnyDirectoryOverTheBareName) {
  WriteScript(d1_ + "/foo.Bar", "exit 0");
  WriteScript(d2_ + "/foo.Bar+arg", "exit 0");
  EXPECT_EQ(Found("foo.Bar", "arg"), d2_ + "/foo.Bar+arg");
  EXPECT_EQ(Found("foo.Bar", "other"), d1_ + "/foo.Bar");
}

TEST_F(LookupTest, SearchesDirectoriesInPathOrder) {
  WriteScript(d1_ + "/foo.Bar", "exit 0");
  WriteScript(d2_ + "/foo.Bar", "exit 0");
  EXPECT_EQ(Found("foo.Bar", "x"), d1_ + "/foo.Bar");
  WriteScript(d1_ + "/foo.Bar+x", "exit 0");
  WriteScript(d2_ + "/foo.Bar+x", "exit 0");
  EXPECT_EQ(Found("foo.Bar", "x"), d1_ + "/foo.Bar+x");
}

TEST_F(LookupTest, WithoutPlusTheFirstPassLooksForNamePlus) {
  WriteScript(d1_ + "/foo.Bar", "exit 0");
  WriteScript(d2_ + "/foo.Bar+", "exit 0");
  EXPECT_EQ(Found("foo.Bar", std::nullopt), d2_ + "/foo.Bar+");
  EXPECT_EQ(Found("foo.Bar", ""), d2_ + "/foo.Bar+");
}

TEST_F(LookupTest, NamePlusArgumentLongerThan255FallsBackToTheName) {
  WriteScript(d2_ + "/foo.Bar", "exit 0");
  EXPECT_EQ(Found("foo.Bar", std::string(300, 'a')), d2_ + "/foo.Bar");
}

TEST_F(LookupTest, NamesWithSlashesNeverLeaveTheDirectory) {
  WriteScript(dir_ / "escaped", "exit 0");
  EXPECT_EQ(Found("../escaped", std::nullopt), "<not found>");
  WriteScript(d1_ + "/foo.Bar", "exit 0");
  EXPECT_EQ(Found("foo.Bar", "/../../escaped"), d1_ + "/foo.Bar");
}

TEST_F(LookupTest, MissingServiceIsNotFound) {
  ServiceLookup lookup = LookupService(path_, "foo.Bar", "x");
  EXPECT_TRUE(std::holds_alternative<ServiceNotFound>(lookup));
  EXPECT_EQ(LookupExitCode(lookup), 127);
}

TEST_F(LookupTest, NonExecutableFileOrDirectoryIsAProblem) {
  WriteFile(d1_ + "/foo.Bar", "not a program", 0644);
  ServiceLookup lookup = LookupService(path_, "foo.Bar", "x");
  EXPECT_TRUE(std::holds_alternative<ServiceProblem>(lookup));
  EXPECT_EQ(LookupExitCode(lookup), 125);
  dir_.MakeDir("d1/dir.Service");
  EXPECT_EQ(Found("dir.Service", std::nullopt), "<problem>");
}

TEST_F(LookupTest, FirstEntryWinsEvenIfItIsNotUsable) {
  WriteFile(d1_ + "/foo.Bar+x", "", 0644);
  WriteScript(d2_ + "/foo.Bar", "exit 0");
  EXPECT_EQ(Found("foo.Bar", "x"), "<problem>");
}

TEST_F(LookupTest, LstatErrorsOtherThanEnoentStopTheLookup) {
  WriteFile(dir_ / "plainfile", "");
  path_.dirs = {dir_ / "plainfile", d2_};  // lstat("plainfile/foo.Bar") -> ENOTDIR
  WriteScript(d2_ + "/foo.Bar", "exit 0");
  EXPECT_EQ(Found("foo.Bar", std::nullopt), "<problem>");
}

TEST_F(LookupTest, FollowsSymlinksToExecutables) {
  WriteScript(dir_ / "real", "exit 0");
  ASSERT_EQ(::symlink((dir_ / "real").c_str(), (d1_ + "/foo.Bar").c_str()), 0);
  EXPECT_EQ(Found("foo.Bar", std::nullopt), d1_ + "/foo.Bar");
  ASSERT_EQ(::symlink((dir_ / "missing").c_str(), (d1_ + "/dangling").c_str()), 0);
  EXPECT_EQ(Found("dangling", std::nullopt), "<problem>");
}

TEST_F(LookupTest, FindsUnixSockets) {
  auto listener = sys::UnixListen(d1_ + "/foo.Socket");
  ASSERT_TRUE(listener.has_value());
  ServiceLookup lookup = LookupService(path_, "foo.Socket", "a");
  ASSERT_TRUE(std::holds_alternative<SocketService>(lookup));
  EXPECT_EQ(std::get<SocketService>(lookup).path, d1_ + "/foo.Socket");
}

TEST_F(LookupTest, SymlinksToDevTcpAreTcpServices) {
  ASSERT_EQ(::symlink("/dev/tcp/127.0.0.1/8082", (d1_ + "/qubes.UpdatesProxy").c_str()), 0);
  ServiceLookup lookup = LookupService(path_, "qubes.UpdatesProxy", std::nullopt);
  ASSERT_TRUE(std::holds_alternative<TcpService>(lookup));
  EXPECT_EQ(std::get<TcpService>(lookup).endpoint, (TcpEndpoint{"127.0.0.1", 8082}));

  ASSERT_EQ(::symlink("/dev/tcp/127.0.0.1", (d1_ + "/qubes.ConnectTCP").c_str()), 0);
  lookup = LookupService(path_, "qubes.ConnectTCP", "22");
  ASSERT_TRUE(std::holds_alternative<TcpService>(lookup));
  EXPECT_EQ(std::get<TcpService>(lookup).endpoint, (TcpEndpoint{"127.0.0.1", 22}));
  // A bad argument is a problem (125), not "not found".
  lookup = LookupService(path_, "qubes.ConnectTCP", "022");
  EXPECT_TRUE(std::holds_alternative<ServiceProblem>(lookup));
}

struct TcpCase {
  const char* target;
  std::optional<std::string> argument;
  std::optional<TcpEndpoint> expected;  // nullopt = rejected
};

class TcpTargetRules : public ::testing::TestWithParam<TcpCase> {};

TEST_P(TcpTargetRules, Apply) {
  const TcpCase& c = GetParam();
  auto endpoint = ParseTcpTarget(c.target, c.argument);
  if (c.expected) {
    ASSERT_TRUE(endpoint.has_value())
        << c.target << " " << c.argument.value_or("<none>") << ": " << endpoint.error().ToString();
    EXPECT_EQ(*endpoint, *c.expected);
  } else {
    EXPECT_FALSE(endpoint.has_value()) << c.target << " " << c.argument.value_or("<none>");
  }
}

INSTANTIATE_TEST_SUITE_P(
    Section42, TcpTargetRules,
    ::testing::Values(
        TcpCase{"/dev/tcp/127.0.0.1/8082", std::nullopt, TcpEndpoint{"127.0.0.1", 8082}},
        TcpCase{"/dev/tcp/127.0.0.1/8082", "", TcpEndpoint{"127.0.0.1", 8082}},
        TcpCase{"/dev/tcp/127.0.0.1/8082", "1", std::nullopt},
        TcpCase{"/dev/tcp/::1/22", std::nullopt, TcpEndpoint{"::1", 22}},
        TcpCase{"/dev/tcp/127.0.0.1/0", std::nullopt, std::nullopt},
        TcpCase{"/dev/tcp/127.0.0.1/65536", std::nullopt, std::nullopt},
        TcpCase{"/dev/tcp/127.0.0.1/65535", std::nullopt, TcpEndpoint{"127.0.0.1", 65535}},
        TcpCase{"/dev/tcp/127.0.0.1/080", std::nullopt, std::nullopt},
        TcpCase{"/dev/tcp/127.0.0.1/8a", std::nullopt, std::nullopt},
        TcpCase{"/dev/tcp/127.0.0.1/", std::nullopt, std::nullopt},
        TcpCase{"/dev/tcp/127.0.0.1/1/2", std::nullopt, std::nullopt},
        TcpCase{"/dev/tcp/localhost/22", std::nullopt, std::nullopt},
        TcpCase{"/dev/tcp//22", std::nullopt, std::nullopt},
        TcpCase{"/dev/tcp/127.0.0.1", "22", TcpEndpoint{"127.0.0.1", 22}},
        TcpCase{"/dev/tcp/127.0.0.1", std::nullopt, std::nullopt},
        TcpCase{"/dev/tcp/127.0.0.1", "", std::nullopt},
        TcpCase{"/dev/tcp/127.0.0.1", "0", std::nullopt},
        TcpCase{"/dev/tcp/127.0.0.1", "-1", std::nullopt},
        TcpCase{"/dev/tcp", "127.0.0.1+22", TcpEndpoint{"127.0.0.1", 22}},
        TcpCase{"/dev/tcp", "fe80++1+22", TcpEndpoint{"fe80::1", 22}},
        TcpCase{"/dev/tcp", "++1+443", TcpEndpoint{"::1", 443}},
        TcpCase{"/dev/tcp", "127.0.0.1", std::nullopt},
        TcpCase{"/dev/tcp", "127.0.0.1+", std::nullopt},
        TcpCase{"/dev/tcp", "+22", std::nullopt},
        TcpCase{"/dev/tcp", "127_0_0_1+22", std::nullopt},
        TcpCase{"/dev/tcp", "fe80++1_+22", std::nullopt},
        TcpCase{"/dev/tcp", "example.com+22", std::nullopt},
        TcpCase{"/dev/tcp", std::nullopt, std::nullopt},
        TcpCase{"/dev/tcpx", "127.0.0.1+22", std::nullopt},
        TcpCase{"/dev/udp/127.0.0.1/1", std::nullopt, std::nullopt}));

}  // namespace
}  // namespace qrexec::exec
