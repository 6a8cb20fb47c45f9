#include "exec/rpc_config.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "exec/test_util.h"

namespace qrexec::exec {
namespace {

using testing::TempDir;
using testing::WriteFile;

TEST(ParseRpcConfig, EmptyTextGivesDefaults) {
  auto config = ParseRpcConfig("");
  ASSERT_TRUE(config.has_value());
  EXPECT_EQ(*config, RpcConfig{});
}

TEST(ParseRpcConfig, ReadsEveryKnownKey) {
  auto config = ParseRpcConfig(
      "# comment\n"
      "\n"
      "wait-for-session = true\n"
      "skip-service-descriptor=true\n"
      "exit-on-service-eof = true # trailing comment\n"
      "exit-on-client-eof = false\n");
  ASSERT_TRUE(config.has_value()) << config.error().ToString();
  EXPECT_TRUE(config->wait_for_session);
  EXPECT_TRUE(config->skip_service_descriptor);
  EXPECT_TRUE(config->exit_on_service_eof);
  EXPECT_FALSE(config->exit_on_client_eof);
  EXPECT_FALSE(config->force_user.has_value());
}

TEST(ParseRpcConfig, WaitForSessionAcceptsZeroAndOne) {
  EXPECT_TRUE(ParseRpcConfig("wait-for-session=1\n")->wait_for_session);
  EXPECT_FALSE(ParseRpcConfig("wait-for-session=0\n")->wait_for_session);
  EXPECT_FALSE(ParseRpcConfig("wait-for-session=2\n").has_value());
  EXPECT_FALSE(ParseRpcConfig("wait-for-session=-1\n").has_value());
  EXPECT_FALSE(ParseRpcConfig("wait-for-session=01\n").has_value());
  EXPECT_FALSE(ParseRpcConfig("wait-for-session='1'\n").has_value());
}

TEST(ParseRpcConfig, ForceUserIsASingleQuotedString) {
  auto config = ParseRpcConfig("force-user = 'root'\n");
  ASSERT_TRUE(config.has_value()) << config.error().ToString();
  EXPECT_EQ(config->force_user, std::optional<std::string>("root"));
  EXPECT_FALSE(ParseRpcConfig("force-user = \"root\"\n").has_value());
  EXPECT_FALSE(ParseRpcConfig("force-user = '''root'''\n").has_value());
  EXPECT_FALSE(ParseRpcConfig("force-user = ''\n").has_value());
  EXPECT_FALSE(ParseRpcConfig("force-user = true\n").has_value());
  EXPECT_FALSE(ParseRpcConfig("force-user = 1\n").has_value());
}

TEST(ParseRpcConfig, ForceUserIsIncompatibleWithSocketOptions) {
  EXPECT_FALSE(ParseRpcConfig("force-user='root'\nskip-service-descriptor=true\n").has_value());
  EXPECT_FALSE(ParseRpcConfig("force-user='root'\nexit-on-service-eof=true\n").has_value());
  EXPECT_FALSE(ParseRpcConfig("exit-on-client-eof=true\nforce-user='root'\n").has_value());
  EXPECT_TRUE(ParseRpcConfig("force-user='root'\nexit-on-client-eof=false\n").has_value());
  EXPECT_TRUE(ParseRpcConfig("force-user='root'\nwait-for-session=true\n").has_value());
}

TEST(ParseRpcConfig, IgnoresUnknownKeys) {
  auto config = ParseRpcConfig("future-option = 'x'\nother = true\ndotted.key = false\nwait-for-session = 1\n");
  ASSERT_TRUE(config.has_value()) << config.error().ToString();
  EXPECT_TRUE(config->wait_for_session);
}

// Qubes logs and ignores an unknown key whatever its (valid) value: an
// integer too, and also when the key repeats or clashes as a TOML table.
TEST(ParseRpcConfig, IgnoresUnknownKeysWithIntegersRepeatsAndDots) {
  auto config = ParseRpcConfig(
      "future-limit = 5\nfuture-limit = 18446744073709551615\nzero = 0\n"
      "a.b = true\na = 'x'\nexit-on-client-eof = true\n");
  ASSERT_TRUE(config.has_value()) << config.error().ToString();
  EXPECT_TRUE(config->exit_on_client_eof);
  EXPECT_EQ(*config, (RpcConfig{.exit_on_client_eof = true}));
}

TEST(ParseRpcConfig, AcceptsCrlfLineEndingsAndNoFinalNewline) {
  auto config = ParseRpcConfig("wait-for-session = true\r\nskip-service-descriptor = true");
  ASSERT_TRUE(config.has_value()) << config.error().ToString();
  EXPECT_TRUE(config->skip_service_descriptor);
}

struct BadConfig {
  const char* label;
  std::string text;
};

class ParseRpcConfigRejects : public ::testing::TestWithParam<BadConfig> {};

TEST_P(ParseRpcConfigRejects, WithMalformed) {
  auto config = ParseRpcConfig(GetParam().text, "test.config");
  ASSERT_FALSE(config.has_value()) << GetParam().label;
  EXPECT_EQ(config.error().kind, ErrorKind::kMalformed);
}

INSTANTIATE_TEST_SUITE_P(
    StricterThanToml, ParseRpcConfigRejects,
    ::testing::Values(
        BadConfig{"double-quoted string", "x = \"a\"\n"},
        BadConfig{"double-quoted key", "\"wait-for-session\" = true\n"},
        BadConfig{"triple single quotes", "x = '''a'''\n"},
        BadConfig{"triple double quotes", "x = \"\"\"a\"\"\"\n"},
        BadConfig{"section header", "[section]\nx = true\n"},
        BadConfig{"array table header", "[[section]]\n"},
        BadConfig{"leading space", " wait-for-session = true\n"},
        BadConfig{"leading tab", "\twait-for-session = true\n"},
        BadConfig{"whitespace-only line", "   \n"},
        BadConfig{"NUL byte", std::string("wait-for-session = true\n\0", 25)},
        BadConfig{"NUL in comment", std::string("# a\0b\n", 6)},
        BadConfig{"duplicate key", "wait-for-session = true\nwait-for-session = true\n"},
        BadConfig{"integer for a bool key", "skip-service-descriptor = 1\n"},
        BadConfig{"wait-for-session beyond 1", "wait-for-session = 2\n"},
        BadConfig{"leading zero", "wait-for-session = 00\n"},
        BadConfig{"leading zero before a digit", "wait-for-session = 01\n"},
        BadConfig{"leading zero, unknown key", "unknown = 007\n"},
        BadConfig{"negative integer, unknown key", "unknown = -1\n"},
        BadConfig{"integer beyond 64 bits, unknown key", "unknown = 18446744073709551616\n"},
        BadConfig{"bad value, unknown key", "unknown = yes\n"},
        BadConfig{"missing value of a known key", "wait-for-session = \n"},
        BadConfig{"key alone", "wait-for-session\n"},
        BadConfig{"empty force-user", "force-user = ''\n"},
        BadConfig{"control character in force-user", "force-user = 'a\x01" "b'\n"},
        BadConfig{"invalid UTF-8 in force-user", "force-user = 'a\xff" "b'\n"},
        BadConfig{"string for a bool key", "exit-on-service-eof = 'true'\n"},
        BadConfig{"float", "x = 1.5\n"},
        BadConfig{"hex integer", "wait-for-session = 0x1\n"},
        BadConfig{"plus sign", "wait-for-session = +1\n"},
        BadConfig{"underscore integer", "wait-for-session = 1_0\n"},
        BadConfig{"array", "x = [1]\n"},
        BadConfig{"inline table", "x = {a = 1}\n"},
        BadConfig{"date", "x = 1979-05-27\n"},
        BadConfig{"bare word", "x = yes\n"},
        BadConfig{"missing value", "x =\n"},
        BadConfig{"missing equals", "wait-for-session true\n"},
        BadConfig{"key starting with digit", "1x = true\n"},
        BadConfig{"key starting with dash", "-x = true\n"},
        BadConfig{"two values", "x = true false\n"},
        BadConfig{"unterminated string", "x = 'abc\n"},
        BadConfig{"True capitalised", "wait-for-session = True\n"}));

TEST(LoadRpcConfig, UsesTheServiceLookupOrderAndDefaultsWithoutAFile) {
  TempDir dir;
  SearchPath path{{dir.MakeDir("a"), dir.MakeDir("b")}};
  auto none = LoadRpcConfig(path, "foo.Bar", "x");
  ASSERT_TRUE(none.has_value());
  EXPECT_EQ(*none, RpcConfig{});

  WriteFile(dir / "a/foo.Bar", "wait-for-session = true\n");
  WriteFile(dir / "b/foo.Bar+x", "force-user = 'root'\n");
  auto specific = LoadRpcConfig(path, "foo.Bar", "x");
  ASSERT_TRUE(specific.has_value());
  EXPECT_EQ(specific->force_user, std::optional<std::string>("root"));
  EXPECT_FALSE(specific->wait_for_session);

  auto general = LoadRpcConfig(path, "foo.Bar", "y");
  ASSERT_TRUE(general.has_value());
  EXPECT_TRUE(general->wait_for_session);
}

// Deliberate difference (docs/compatibility.md): a link to nothing is an
// error, not a missing config.
TEST(LoadRpcConfig, ALinkToNothingFails) {
  TempDir dir;
  SearchPath path{{dir.path()}};
  std::filesystem::create_symlink(dir / "absent", dir / "link.Service");
  EXPECT_FALSE(LoadRpcConfig(path, "link.Service", std::nullopt).has_value());
}

TEST(LoadRpcConfig, ParseErrorsAndDirectoriesFail) {
  TempDir dir;
  SearchPath path{{dir.path()}};
  WriteFile(dir / "bad.Service", "[x]\n");
  auto bad = LoadRpcConfig(path, "bad.Service", std::nullopt);
  ASSERT_FALSE(bad.has_value());
  EXPECT_EQ(bad.error().kind, ErrorKind::kMalformed);
  dir.MakeDir("dir.Service");
  EXPECT_FALSE(LoadRpcConfig(path, "dir.Service", std::nullopt).has_value());
}

}  // namespace
}  // namespace qrexec::exec
