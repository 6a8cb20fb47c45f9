// Unit tests of the daemon's pure pieces: options, port table, policy answers.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "daemon/daemon_options.h"
#include "daemon/policy_answer.h"
#include "daemon/policy_query.h"
#include "daemon/port_table.h"

namespace qrexec::daemon {
namespace {

std::variant<DaemonConfig, ParseExit> Parse(std::vector<std::string> args) {
  std::vector<char*> argv;
  for (auto& arg : args) argv.push_back(arg.data());
  argv.push_back(nullptr);
  return ParseDaemonOptions(static_cast<int>(args.size()), argv.data());
}

TEST(DaemonOptions, ParsesTheQubesdCommandLine) {
  auto parsed = Parse(
      {"qrexec-daemon", "-q", "--uuid=1234", "--socket-dir=/tmp/x", "-D", "7", "work", "alice"});
  ASSERT_TRUE(std::holds_alternative<DaemonConfig>(parsed));
  auto& config = std::get<DaemonConfig>(parsed);
  EXPECT_EQ(config.domid, 7);
  EXPECT_EQ(config.name, "work");
  EXPECT_EQ(config.default_user, "alice");
  EXPECT_EQ(config.uuid, "1234");
  EXPECT_EQ(config.socket_dir, "/tmp/x");
  EXPECT_TRUE(config.quiet);
  EXPECT_TRUE(config.direct);
}

TEST(DaemonOptions, DefaultUserIsUser) {
  auto parsed = Parse({"qrexec-daemon", "-u", "u", "3", "work"});
  ASSERT_TRUE(std::holds_alternative<DaemonConfig>(parsed));
  EXPECT_EQ(std::get<DaemonConfig>(parsed).default_user, "user");
}

TEST(DaemonOptions, MissingUuidIsAUsageErrorWithExit1) {
  auto parsed = Parse({"qrexec-daemon", "3", "work"});
  ASSERT_TRUE(std::holds_alternative<ParseExit>(parsed));
  EXPECT_EQ(std::get<ParseExit>(parsed).code, 1);
}

TEST(DaemonOptions, DomainIdZeroOrGarbageIsRefused) {
  for (const char* id : {"0", "abc", "-3"}) {
    auto parsed = Parse({"qrexec-daemon", "-u", "u", id, "work"});
    ASSERT_TRUE(std::holds_alternative<ParseExit>(parsed)) << id;
    EXPECT_EQ(std::get<ParseExit>(parsed).code, 1);
  }
}

TEST(DaemonOptions, HelpExits1) {
  auto parsed = Parse({"qrexec-daemon", "-h"});
  ASSERT_TRUE(std::holds_alternative<ParseExit>(parsed));
  EXPECT_EQ(std::get<ParseExit>(parsed).code, 1);
}

TEST(PortTable, HigherPeerGetsEvenPortsInOrder) {
  PortTable ports(42);
  EXPECT_EQ(ports.Allocate(43), 514u);
  EXPECT_EQ(ports.Allocate(43), 516u);
}

TEST(PortTable, LowerPeerGetsOddPortsAndDom0AnyPort) {
  PortTable ports(42);
  EXPECT_EQ(ports.Allocate(5), 513u);
  EXPECT_EQ(ports.Allocate(5), 515u);
  EXPECT_EQ(ports.Allocate(0), 514u);
  EXPECT_EQ(ports.Allocate(0), 516u);
}

TEST(PortTable, ReleaseNeedsTheSameDomain) {
  PortTable ports(42);
  ASSERT_EQ(ports.Allocate(43), 514u);
  EXPECT_FALSE(ports.Release(514, 44));
  EXPECT_TRUE(ports.InUse(514));
  EXPECT_TRUE(ports.Release(514, 43));
  EXPECT_FALSE(ports.InUse(514));
  EXPECT_EQ(ports.Allocate(43), 514u);
}

TEST(PortTable, RunsOutAfter128PortsPerParity) {
  PortTable ports(42);
  for (int i = 0; i < 128; ++i) ASSERT_TRUE(ports.Allocate(43).has_value());
  EXPECT_FALSE(ports.Allocate(43).has_value());
  EXPECT_TRUE(ports.Allocate(1).has_value());
}

TEST(PolicyAnswer, DenyIsAccepted) {
  auto answer = ParsePolicyAnswer("result=deny\n");
  ASSERT_TRUE(answer);
  EXPECT_FALSE(answer->allow);
}

TEST(PolicyAnswer, FullAllowIsParsed) {
  auto answer = ParsePolicyAnswer(
      "user=DEFAULT\nresult=allow\ntarget=work\ntarget_uuid=uuid:abc\nautostart=True\n"
      "requested_target=work\npolicy_source=src\nunknown=ignored");
  ASSERT_TRUE(answer) << answer.error().ToString();
  EXPECT_TRUE(answer->allow);
  EXPECT_EQ(answer->user, "DEFAULT");
  EXPECT_EQ(answer->target, "work");
  EXPECT_EQ(answer->target_uuid, "uuid:abc");
  EXPECT_TRUE(answer->autostart);
  EXPECT_EQ(answer->requested_target, "work");
  EXPECT_EQ(answer->policy_source, "src");
  EXPECT_FALSE(answer->service);
}

TEST(PolicyAnswer, MalformedAnswersAreRejected) {
  for (std::string text : std::vector<std::string>{
           "", "result=maybe", "result=deny\nresult=deny", "result=deny\nuser=x",
           "result=allow\nuser=u\ntarget=t\nautostart=True",
           "result=allow\nuser=u\ntarget=t\nrequested_target=t\nautostart=yes", "result=deny\n\n",
           "result=deny\ngarbage", std::string("result=deny\0", 12)}) {
    EXPECT_FALSE(ParsePolicyAnswer(text)) << text;
  }
}

TEST(PolicyRequest, LinesAreInTheReferenceOrder) {
  EXPECT_EQ(FormatPolicyRequest({"work", std::string(), "@default", "qubes.Foo+bar"}),
            "source=work\nrequested_source=\nintended_target=@default\n"
            "service_and_arg=qubes.Foo+bar\n\n");
  EXPECT_EQ(FormatPolicyRequest({"work", std::nullopt, "vault", "qubes.Foo+"}),
            "source=work\nintended_target=vault\nservice_and_arg=qubes.Foo+\n\n");
}

}  // namespace
}  // namespace qrexec::daemon
