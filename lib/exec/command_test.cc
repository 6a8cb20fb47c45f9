#include "exec/command.h"

#include <gtest/gtest.h>

#include <string>

namespace qrexec::exec {
namespace {

TEST(ParseCommand, AcceptsAVmRpcCommandWithArgument) {
  auto cmd = ParseCommand("user:QUBESRPC foo.Bar+arg work");
  ASSERT_TRUE(cmd.has_value()) << cmd.error().ToString();
  EXPECT_EQ(cmd->user, "user");
  EXPECT_FALSE(cmd->nogui);
  ASSERT_TRUE(cmd->is_rpc());
  EXPECT_EQ(cmd->body, "QUBESRPC foo.Bar+arg work");
  EXPECT_EQ(cmd->rpc->rpc_text, "foo.Bar+arg work");
  EXPECT_EQ(cmd->rpc->descriptor, "foo.Bar+arg");
  EXPECT_EQ(cmd->rpc->service_name, "foo.Bar");
  EXPECT_EQ(cmd->rpc->argument, std::optional<std::string>("arg"));
  EXPECT_EQ(cmd->rpc->source, "work");
  EXPECT_EQ(cmd->rpc->target_type, TargetType::kNone);
  EXPECT_TRUE(cmd->shell_command.empty());
}

TEST(ParseCommand, DistinguishesAnEmptyArgumentFromNoArgument) {
  auto with_plus = ParseCommand("user:QUBESRPC foo.Bar+ work");
  ASSERT_TRUE(with_plus.has_value());
  EXPECT_EQ(with_plus->rpc->argument, std::optional<std::string>(""));
  auto without = ParseCommand("user:QUBESRPC foo.Bar work");
  ASSERT_TRUE(without.has_value());
  EXPECT_FALSE(without->rpc->argument.has_value());
  EXPECT_EQ(without->rpc->descriptor, "foo.Bar");
}

TEST(ParseCommand, KeepsEverythingAfterTheFirstPlusAsTheArgument) {
  auto cmd = ParseCommand("user:QUBESRPC qubes.ConnectTCP+fe80++1+22 work");
  ASSERT_TRUE(cmd.has_value());
  EXPECT_EQ(cmd->rpc->service_name, "qubes.ConnectTCP");
  EXPECT_EQ(cmd->rpc->argument, std::optional<std::string>("fe80++1+22"));
}

TEST(ParseCommand, StripsNogui) {
  auto cmd = ParseCommand("root:nogui:QUBESRPC qubes.VMShell dom0");
  ASSERT_TRUE(cmd.has_value());
  EXPECT_EQ(cmd->user, "root");
  EXPECT_TRUE(cmd->nogui);
  EXPECT_EQ(cmd->rpc->service_name, "qubes.VMShell");
  EXPECT_EQ(cmd->rpc->source, "dom0");
}

TEST(ParseCommand, AcceptsFourTokenDom0CommandsWithNameOrKeyword) {
  auto name = ParseCommand("QUBESRPC foo.Bar+x work name dom0", UserPrefix::kAbsent);
  ASSERT_TRUE(name.has_value()) << name.error().ToString();
  EXPECT_TRUE(name->user.empty());
  EXPECT_EQ(name->rpc->target_type, TargetType::kName);
  EXPECT_EQ(name->rpc->target, "dom0");
  EXPECT_EQ(name->rpc->rpc_text, "foo.Bar+x work name dom0");

  auto keyword = ParseCommand("nogui:QUBESRPC foo.Bar work keyword adminvm", UserPrefix::kAbsent);
  ASSERT_TRUE(keyword.has_value());
  EXPECT_TRUE(keyword->nogui);
  EXPECT_EQ(keyword->rpc->target_type, TargetType::kKeyword);
  EXPECT_EQ(keyword->rpc->target, "adminvm");
}

TEST(ParseCommand, WithoutUserPrefixTakesTheColonAsPartOfTheCommand) {
  auto cmd = ParseCommand("echo a:b", UserPrefix::kAbsent);
  ASSERT_TRUE(cmd.has_value());
  EXPECT_FALSE(cmd->is_rpc());
  EXPECT_EQ(cmd->shell_command, "echo a:b");
}

TEST(ParseCommand, AcceptsLegacyShellCommands) {
  auto cmd = ParseCommand("user:echo hello  world; exit 3");
  ASSERT_TRUE(cmd.has_value());
  EXPECT_FALSE(cmd->is_rpc());
  EXPECT_EQ(cmd->user, "user");
  EXPECT_EQ(cmd->shell_command, "echo hello  world; exit 3");
  auto nogui = ParseCommand("user:nogui:true");
  ASSERT_TRUE(nogui.has_value());
  EXPECT_TRUE(nogui->nogui);
  EXPECT_EQ(nogui->shell_command, "true");
}

TEST(ParseCommand, SplitsTheUserAtTheFirstColon) {
  auto cmd = ParseCommand("user:nogui:QUBESRPC a b");
  ASSERT_TRUE(cmd.has_value());
  EXPECT_EQ(cmd->user, "user");
}

TEST(ParseCommand, AcceptsLimitLengths) {
  std::string name255(255, 'n');
  auto cmd = ParseCommand("u:QUBESRPC " + name255 + "+" + std::string(1000, 'a') + " src");
  ASSERT_TRUE(cmd.has_value());
  EXPECT_EQ(cmd->rpc->service_name.size(), 255u);
  std::string descriptor65000 = "n+" + std::string(65000 - 2, 'a');
  EXPECT_TRUE(ParseCommand("u:QUBESRPC " + descriptor65000 + " src").has_value());
}

struct RejectCase {
  const char* label;
  std::string command;
  UserPrefix prefix = UserPrefix::kPresent;
};

class ParseCommandRejects : public ::testing::TestWithParam<RejectCase> {};

TEST_P(ParseCommandRejects, WithMalformed) {
  auto cmd = ParseCommand(GetParam().command, GetParam().prefix);
  ASSERT_FALSE(cmd.has_value()) << GetParam().label;
  EXPECT_EQ(cmd.error().kind, ErrorKind::kMalformed);
}

INSTANTIATE_TEST_SUITE_P(
    BadCommands, ParseCommandRejects,
    ::testing::Values(
        RejectCase{"no user", "QUBESRPC foo.Bar src"},
        RejectCase{"empty user", ":QUBESRPC foo.Bar src"},
        RejectCase{"empty command", "user:"},
        RejectCase{"empty command after nogui", "user:nogui:"},
        RejectCase{"empty command without prefix", "", UserPrefix::kAbsent},
        RejectCase{"QUBESRPC alone", "user:QUBESRPC"},
        RejectCase{"QUBESRPC glued", "user:QUBESRPCfoo.Bar src"},
        RejectCase{"two spaces", "user:QUBESRPC  foo.Bar src"},
        RejectCase{"trailing space only", "user:QUBESRPC "},
        RejectCase{"one token", "user:QUBESRPC foo.Bar"},
        RejectCase{"empty source", "user:QUBESRPC foo.Bar "},
        RejectCase{"three tokens", "user:QUBESRPC foo.Bar src name"},
        RejectCase{"five tokens", "user:QUBESRPC foo.Bar src name dom0 x"},
        RejectCase{"double space between tokens", "user:QUBESRPC foo.Bar  src"},
        RejectCase{"trailing space", "user:QUBESRPC foo.Bar src "},
        RejectCase{"bad target type", "QUBESRPC foo.Bar src uuid dom0", UserPrefix::kAbsent},
        RejectCase{"empty target", "QUBESRPC foo.Bar src name ", UserPrefix::kAbsent},
        RejectCase{"leading plus", "user:QUBESRPC +arg src"},
        RejectCase{"slash", "user:QUBESRPC foo/Bar src"},
        RejectCase{"slash in argument", "user:QUBESRPC foo+../../bin/sh src"},
        RejectCase{"dot", "user:QUBESRPC . src"},
        RejectCase{"dotdot", "user:QUBESRPC ..+x src"},
        RejectCase{"NUL in service", std::string("user:QUBESRPC foo\0x src", 23)},
        RejectCase{"NUL in legacy command", std::string("user:echo\0x", 11)},
        RejectCase{"name 256 bytes", "u:QUBESRPC " + std::string(256, 'n') + "+a src"},
        RejectCase{"descriptor 65001 bytes", "u:QUBESRPC n+" + std::string(65001 - 2, 'a') + " src"}));

TEST(SubstituteDefaultUser, ReplacesOnlyALeadingDefault) {
  EXPECT_EQ(SubstituteDefaultUser("DEFAULT:QUBESRPC a b", "user"), "user:QUBESRPC a b");
  EXPECT_EQ(SubstituteDefaultUser("root:QUBESRPC a b", "user"), "root:QUBESRPC a b");
  EXPECT_EQ(SubstituteDefaultUser("DEFAULTS:x", "user"), "DEFAULTS:x");
  EXPECT_EQ(SubstituteDefaultUser("DEFAULT:", "u"), "u:");
}

TEST(FormatRpcCommand, BuildsWhatParseCommandReads) {
  EXPECT_EQ(FormatRpcCommand("user", "foo.Bar+a", "work"), "user:QUBESRPC foo.Bar+a work");
  EXPECT_EQ(FormatRpcCommand("", "foo.Bar", "work"), "QUBESRPC foo.Bar work");
  auto cmd = ParseCommand(FormatRpcCommand("user", "foo.Bar+a", "work"));
  ASSERT_TRUE(cmd.has_value());
  EXPECT_EQ(cmd->rpc->descriptor, "foo.Bar+a");
}

}  // namespace
}  // namespace qrexec::exec
