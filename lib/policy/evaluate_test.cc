// Evaluation: the acceptance rows of policy-language.md §6.3, the token match
// table (TC_00 100), ask target collection, RemoteVM and relays, the
// non-interactive modes, agent replies, crash paths that must fail closed.
#include <random>

#include <gtest/gtest.h>

#include "policy/test_util.h"

namespace qrexec::policy {
namespace {

using testing::Allow;
using testing::Eval;
using testing::MustParse;
using testing::TestSystemInfo;

const std::string kVm2Uuid = "uuid:b3eb69d0-f9d9-4c3c-ad5c-454500303ea4";
const std::string kVm3Uuid = "uuid:fa6d56e8-a89d-4106-aa62-22e172a43c8b";

const char* kSetup =
    "* * test-vm1 test-vm2 allow\n"
    "* * test-vm1 @default allow target=test-vm2\n"
    "* * @tag:tag1 test-vm2 ask\n"
    "* * @tag:tag1 test-vm3 ask default_target=test-vm3\n"
    "* * @tag:tag2 @anyvm allow\n"
    "* * test-vm3 @anyvm deny\n";

const char* kFind =
    "* * test-vm1 test-vm2 allow\n"
    "* * test-vm1 @anyvm ask\n"
    "* * test-vm2 @tag:tag1 deny\n"
    "* * test-vm2 @tag:tag2 allow\n"
    "* * test-vm2 @dispvm:@tag:tag3 allow\n"
    "* * test-vm2 @dispvm:@tag:tag2 allow\n"
    "* * test-vm2 @dispvm:default-dvm allow\n"
    "* * @type:AppVM @default allow target=test-vm3\n"
    "* * @tag:tag1 @type:AppVM allow\n";

const char* kCollect =
    "* * @anyvm @default ask\n"
    "* * test-vm1 test-vm2 allow\n"
    "* * test-vm1 @anyvm ask\n"
    "* * test-vm2 @tag:tag1 deny\n"
    "* * test-vm2 @tag:tag2 allow\n"
    "* * test-no-dvm @type:AppVM deny\n"
    "* * @type:AppVM @default allow target=test-vm3\n"
    "* * @tag:tag1 @type:AppVM allow\n"
    "* * test-no-dvm @dispvm allow\n"
    "* * test-standalone @dispvm allow\n"
    "* * test-standalone @adminvm allow\n"
    "* * uuid:c9024a97-9b15-46cc-8341-38d75d5d421b bogus2 deny\n"
    "* * uuid:c798d6db-360f-473a-b902-1cc58ffd3ab0 uuid:6d7a02b5-532b-467f-b9fb-6596bae03c33 ask\n"
    "* * test2-vm1 @dispvm:uuid:91e4fe8d-083b-4ddf-ad7b-fb4ebac537b9 ask\n";

const std::vector<std::string> kL19 = {
    "@dispvm:default-dvm", "@dispvm:test-vm3", "@dispvm:test-vm4", "default-dvm",
    "test-invalid-dvm",    "test-no-dvm",      "test-relayvm1",    "test-remotevm1",
    "test-standalone",     "test-template",    "test-vm1",         "test-vm2",
    "test-vm3",            "test-vm4",         "test2-relayvm1",   "test2-relayvm2",
    "test2-remotevm1",     "test2-remotevm2",  "test2-vm1"};

std::vector<std::string> L19Minus(const std::string& source) {
  std::vector<std::string> out;
  for (const std::string& t : kL19)
    if (t != source) out.push_back(t);
  return out;
}

TEST(Acceptance, Row1And2SimpleAllowAndNoMatch) {
  Policy p = MustParse("* * test-vm1 test-vm2 allow\n");
  Decision d = Eval(p, "test-vm1", "test-vm2");
  EXPECT_EQ(d.verdict, Verdict::kAllow);
  EXPECT_EQ(d.rule->ToString(), "test.policy:1");
  EXPECT_EQ(d.answer, Allow("test-vm2", kVm2Uuid, "test-vm2"));
  d = Eval(p, "test-vm2", "@default");
  EXPECT_EQ(d.reason, "no matching rule found");
  EXPECT_TRUE(d.notify);
  EXPECT_FALSE(d.rule);
  EXPECT_EQ(d.answer, "result=deny");
}

TEST(Acceptance, Row3RedirectOfADefaultRequest) {
  Decision d = Eval(MustParse(kSetup), "test-vm1", "@default");
  EXPECT_EQ(d.rule->line, 2);
  EXPECT_EQ(d.answer, Allow("test-vm2", kVm2Uuid, "@default"));
}

TEST(Acceptance, Row5AutostartNo) {
  Policy p = MustParse("* * test-vm1 test-vm2 allow autostart=no\n"
                       "* * test-vm1 test-vm3 allow autostart=no\n");
  EXPECT_EQ(Eval(p, "test-vm1", "test-vm2").answer,
            Allow("test-vm2", kVm2Uuid, "test-vm2", "False"));
  Decision d = Eval(p, "test-vm1", "test-vm3");
  EXPECT_EQ(d.reason, "target test-vm3 is denied because it would require autostart");
  EXPECT_FALSE(d.notify);
  EXPECT_EQ(d.rule->line, 2);
}

TEST(Acceptance, Row6AskListIsL19MinusTheSource) {
  Decision d = Eval(MustParse(kSetup), "test-standalone", "test-vm2");
  EXPECT_EQ(d.verdict, Verdict::kAsk);
  EXPECT_EQ(d.rule->line, 3);
  EXPECT_EQ(d.targets, L19Minus("test-standalone"));
  EXPECT_FALSE(d.default_target);
  Decision d4 = Eval(MustParse(kSetup), "test-standalone", "test-vm3");
  EXPECT_EQ(d4.default_target, "test-vm3");
}

TEST(Acceptance, Row8AskWithNothingToChoose) {
  Decision d = Eval(MustParse("* * test-vm3 @default ask\n"), "test-vm3", "@default");
  EXPECT_EQ(d.reason,
            "policy define 'ask' action at test.policy:1 but no target is available to choose from");
  EXPECT_TRUE(d.notify);
}

TEST(Acceptance, Row11And12DispVmResolution) {
  EXPECT_EQ(Eval(MustParse("* * test-vm3 @dispvm allow\n"), "test-vm3", "@dispvm").answer,
            Allow("@dispvm:default-dvm", "@dispvm:uuid:f3e538bd-4427-4697-bed7-45ef3270df21",
                  "@dispvm"));
  EXPECT_EQ(Eval(MustParse("* * test-no-dvm @dispvm allow\n"), "test-no-dvm", "@dispvm").reason,
            "policy define 'allow' action to @dispvm at test.policy:1 but no DispVM base is set "
            "for this VM");
  // The template is not checked for template_for_dispvms here.
  EXPECT_EQ(
      Eval(MustParse("* * @anyvm @dispvm allow\n"), "test-invalid-dvm", "@dispvm").target,
      "@dispvm:test-vm1");
}

TEST(Acceptance, Row14AllowToDom0) {
  Policy p = MustParse("* * test-vm3 @adminvm allow\n");
  EXPECT_EQ(Eval(p, "test-vm3", "@adminvm").answer,
            "user=DEFAULT\nresult=allow\ntarget=dom0\nautostart=True\nrequested_target=@adminvm");
  EXPECT_EQ(Eval(p, "test-vm3", "dom0").answer,
            "user=DEFAULT\nresult=allow\ntarget=dom0\nautostart=True\nrequested_target=dom0");
  EXPECT_EQ(Eval(p, "test-vm3", "uuid:00000000-0000-0000-0000-000000000000").verdict,
            Verdict::kAllow);
}

TEST(Acceptance, Row20And22FirstMatchAndLoopback) {
  Policy p = MustParse(kFind);
  Decision d = Eval(p, "test-vm2", "test-no-dvm");
  EXPECT_EQ(d.reason, "denied by policy test.policy:3");
  d = Eval(p, "test-no-dvm", "test-vm3");
  EXPECT_EQ(d.rule->line, 9);
  EXPECT_EQ(d.answer, Allow("test-vm3", kVm3Uuid, "test-vm3"));
  EXPECT_EQ(Eval(p, "test-no-dvm", "test-standalone").reason, "no matching rule found");
  d = Eval(p, "test-vm2", "test-vm2");
  EXPECT_EQ(d.rule->line, 4);
  EXPECT_EQ(d.reason, "loopback qrexec connection not supported");
}

TEST(Acceptance, Row29And30NotifyAndExactArgument) {
  Decision d = Eval(MustParse("* * @anyvm @anyvm deny notify=no\n"), "test-vm1", "test-vm2");
  EXPECT_FALSE(d.notify);
  EXPECT_TRUE(Eval(MustParse("* * @anyvm @anyvm deny\n"), "test-vm1", "test-vm2").notify);
  Policy p = MustParse("test.Service +argument @anyvm @anyvm allow\n"
                       "test.Service * @anyvm @anyvm deny\n");
  EXPECT_EQ(Eval(p, "test-vm1", "test-vm2", "test.Service+other").reason,
            "denied by policy test.policy:2");
  EXPECT_EQ(Eval(p, "test-vm1", "test-vm2").verdict, Verdict::kAllow);
}

TEST(Acceptance, Row34InvalidRequestTargets) {
  Policy p = MustParse("* * @anyvm @anyvm allow\n");
  Decision d = Eval(p, "test-vm1", "@dispvm:nonexistent");
  EXPECT_EQ(d.reason, "not a template for dispvm: nonexistent");
  EXPECT_TRUE(d.notify);
  d = Eval(p, "test-vm1", "*");
  EXPECT_EQ(d.reason, "<unknown>:0: invalid intendedtarget token: '*'");
  EXPECT_FALSE(d.notify);
  for (const char* t : {"@anyvm", "@tag:tag1", "@type:AppVM", "@dispvm:@tag:x", "@invalid"})
    EXPECT_EQ(Eval(p, "test-vm1", t).verdict, Verdict::kDeny) << t;
  EXPECT_EQ(Eval(p, "test-vm1", "@dispvm:test-vm1").reason, "not a template for dispvm: test-vm1");
}

TEST(Requests, UnknownTargetsBecomeDefaultAndArgumentsSplitAtFirstPlus) {
  Decision d = Eval(MustParse("* * test-vm1 @default allow target=test-vm2\n"), "test-vm1",
                    "no-such-vm");
  EXPECT_EQ(d.requested_target, "@default");
  EXPECT_FALSE(d.warnings.empty());
  EXPECT_EQ(Eval(MustParse("* * test-vm1 @default allow target=test-vm2\n"), "test-vm1",
                 "test-vm1 ")
                .requested_target,
            "@default");
  EXPECT_EQ(SplitServiceAndArgument("svc"), std::make_pair(std::string("svc"), std::string("+")));
  EXPECT_EQ(SplitServiceAndArgument("svc+"), std::make_pair(std::string("svc"), std::string("+")));
  EXPECT_EQ(SplitServiceAndArgument("svc+a+b"),
            std::make_pair(std::string("svc"), std::string("+a+b")));
  Policy plus = MustParse("svc + @anyvm @anyvm allow\n");
  EXPECT_EQ(Eval(plus, "test-vm1", "test-vm2", "svc").verdict, Verdict::kAllow);
  EXPECT_EQ(Eval(plus, "test-vm1", "test-vm2", "svc+").verdict, Verdict::kAllow);
  EXPECT_EQ(Eval(plus, "test-vm1", "test-vm2", "svc+x").verdict, Verdict::kDeny);
}

TEST(Requests, UnknownSourcesStillMatchWildcardsAndLiterals) {
  EXPECT_EQ(Eval(MustParse("* * @anyvm @anyvm allow\n"), "no-such-vm", "test-vm2").verdict,
            Verdict::kAllow);
  EXPECT_EQ(Eval(MustParse("* * no-such-vm test-vm2 allow\n"), "no-such-vm", "test-vm2").verdict,
            Verdict::kAllow);
  // ...but an ask from an unknown source fails closed.
  Decision d = Eval(MustParse("* * @anyvm @anyvm ask\n"), "no-such-vm", "test-vm2");
  EXPECT_EQ(d.verdict, Verdict::kDeny);
  EXPECT_TRUE(d.internal_failure);
  EXPECT_FALSE(d.notify);
}

// "yes" when rule target TOKEN accepts the request target (TC_00 100 rows).
bool TargetMatches(const std::string& token, const std::string& target,
                   const std::string& source = "test-vm1") {
  Decision d = Eval(MustParse("* * " + source + " " + token + " deny\n"), source, target);
  return d.reason == "denied by policy test.policy:1";
}

TEST(Matching, TargetTokenTableRows) {
  EXPECT_TRUE(TargetMatches("@anyvm", "@default"));
  EXPECT_FALSE(TargetMatches("@anyvm", "dom0"));
  EXPECT_FALSE(TargetMatches("@anyvm", "@adminvm"));
  EXPECT_TRUE(TargetMatches("*", "@adminvm"));
  EXPECT_TRUE(TargetMatches("*", "@dispvm"));
  EXPECT_TRUE(TargetMatches("@default", "no-such-vm"));
  EXPECT_FALSE(TargetMatches("@tag:dom0-tag", "@adminvm"));
  EXPECT_TRUE(TargetMatches("@tag:dom0-tag", "dom0"));
  EXPECT_TRUE(TargetMatches("@type:AdminVM", "dom0"));
  EXPECT_FALSE(TargetMatches("@type:AdminVM", "@adminvm"));
  EXPECT_FALSE(TargetMatches("@dispvm", "default-dvm"));
  EXPECT_FALSE(TargetMatches("@dispvm", "@dispvm:default-dvm"));
  EXPECT_TRUE(TargetMatches("@dispvm", "@dispvm"));
  EXPECT_FALSE(TargetMatches("@dispvm:default-dvm", "default-dvm"));
  EXPECT_TRUE(TargetMatches("@dispvm:default-dvm", "@dispvm"));
  EXPECT_FALSE(TargetMatches("@dispvm:test-vm3", "@dispvm"));
  EXPECT_TRUE(TargetMatches("@dispvm:uuid:f3e538bd-4427-4697-bed7-45ef3270df21",
                            "@dispvm:default-dvm"));
  EXPECT_TRUE(TargetMatches("@dispvm:default-dvm",
                            "@dispvm:uuid:f3e538bd-4427-4697-bed7-45ef3270df21"));
  EXPECT_FALSE(TargetMatches("@dispvm:uuid:f3e538bd-4427-4697-bed7-45ef3270df21", "@dispvm"));
  EXPECT_TRUE(TargetMatches("uuid:6d7a02b5-532b-467f-b9fb-6596bae03c33", "test-standalone"));
  EXPECT_TRUE(TargetMatches("test-standalone", "uuid:6d7a02b5-532b-467f-b9fb-6596bae03c33"));
  EXPECT_FALSE(TargetMatches("uuid:00000000-0000-0000-0000-000000000000", "@dispvm:default-dvm"));
  EXPECT_TRUE(TargetMatches("uuid:00000000-0000-0000-0000-000000000000", "@adminvm"));
  EXPECT_TRUE(TargetMatches("dom0", "uuid:00000000-0000-0000-0000-000000000000"));
  EXPECT_TRUE(TargetMatches("@dispvm:@tag:tag3", "@dispvm:test-vm3"));
  EXPECT_FALSE(TargetMatches("@dispvm:@tag:tag1", "@dispvm:test-vm3"));
  EXPECT_FALSE(TargetMatches("@dispvm:@tag:tag3", "@dispvm", "test-vm1"));  // default-dvm untagged
  EXPECT_FALSE(TargetMatches("@dispvm:@tag:tag3", "@dispvm", "test-no-dvm"));
  EXPECT_TRUE(TargetMatches("@tag:tag2", "test-vm2"));
  EXPECT_FALSE(TargetMatches("@tag:tag2", "test-vm3"));
  EXPECT_TRUE(TargetMatches("@type:TemplateVM", "test-template"));
}

bool SourceMatches(const std::string& token, const std::string& source) {
  Decision d = Eval(MustParse("* * " + token + " test-vm2 deny\n"), source, "test-vm2");
  return d.reason == "denied by policy test.policy:1";
}

TEST(Matching, SourceTokenTableRows) {
  EXPECT_TRUE(SourceMatches("*", "dom0"));
  EXPECT_FALSE(SourceMatches("@anyvm", "dom0"));
  EXPECT_TRUE(SourceMatches("@anyvm", "test-vm1"));
  EXPECT_TRUE(SourceMatches("@adminvm", "dom0"));
  EXPECT_TRUE(SourceMatches("dom0", "@adminvm"));
  EXPECT_TRUE(SourceMatches("uuid:c9024a97-9b15-46cc-8341-38d75d5d421b", "test-vm1"));
  EXPECT_TRUE(SourceMatches("test-vm1", "uuid:c9024a97-9b15-46cc-8341-38d75d5d421b"));
  EXPECT_TRUE(SourceMatches("@tag:tag1", "test-vm1"));
  EXPECT_FALSE(SourceMatches("@tag:tag1", "test-vm3"));
  EXPECT_TRUE(SourceMatches("@type:StandaloneVM", "test-standalone"));
  EXPECT_FALSE(SourceMatches("@dispvm:default-dvm", "default-dvm"));
  EXPECT_FALSE(SourceMatches("@dispvm:@tag:tag3", "test-vm3"));
  EXPECT_FALSE(SourceMatches("Test-vm1", "test-vm1"));
}

// The redirect column (allow target=) for each token kind it accepts.
TEST(Matching, RedirectTokensOfAllow) {
  auto redirect = [](const std::string& target) {
    return Eval(MustParse("* * test-vm1 @anyvm allow target=" + target + "\n"), "test-vm1",
                "test-vm3");
  };
  EXPECT_EQ(redirect("test-vm2").answer, Allow("test-vm2", kVm2Uuid, "test-vm3"));
  EXPECT_EQ(redirect("uuid:b3eb69d0-f9d9-4c3c-ad5c-454500303ea4").answer,
            Allow("uuid:b3eb69d0-f9d9-4c3c-ad5c-454500303ea4", kVm2Uuid, "test-vm3"));
  EXPECT_EQ(redirect("@adminvm").answer,
            "user=DEFAULT\nresult=allow\ntarget=dom0\nautostart=True\nrequested_target=test-vm3");
  EXPECT_EQ(redirect("dom0").target, "dom0");
  EXPECT_EQ(redirect("@dispvm").answer,
            Allow("@dispvm:default-dvm", "@dispvm:uuid:f3e538bd-4427-4697-bed7-45ef3270df21",
                  "test-vm3"));
  EXPECT_EQ(redirect("@dispvm:test-vm4").answer,
            Allow("@dispvm:test-vm4", "@dispvm:uuid:91e4fe8d-083b-4ddf-ad7b-fb4ebac537b9",
                  "test-vm3"));
  EXPECT_EQ(redirect("@dispvm:test-vm2").reason, "not a template for dispvm: test-vm2");
  EXPECT_EQ(redirect("no-such-vm").reason,
            "policy define 'allow' action at test.policy:1 but no target is specified by caller "
            "or policy");
  EXPECT_EQ(redirect("test-vm1").reason, "loopback qrexec connection not supported");
  // The loopback check compares spellings: a uuid spelling of the source passes.
  EXPECT_EQ(redirect("uuid:c9024a97-9b15-46cc-8341-38d75d5d421b").verdict, Verdict::kAllow);
}

TEST(Matching, DispVmRuleAgainstDispVmRequestWithoutDefaultFailsClosed) {
  Decision d = Eval(MustParse("* * @anyvm @dispvm:default-dvm allow\n* * @anyvm @anyvm allow\n"),
                    "test-no-dvm", "@dispvm");
  EXPECT_EQ(d.verdict, Verdict::kDeny);
  EXPECT_TRUE(d.internal_failure);
}

TEST(AskCollection, PCollectListsPerSource) {
  Policy p = MustParse(kCollect);
  EXPECT_EQ(Eval(p, "test-vm1", "@default").targets, L19Minus("test-vm1"));
  EXPECT_EQ(Eval(p, "test-vm2", "@default").targets, std::vector<std::string>{"test-vm3"});
  Decision none = Eval(p, "test-no-dvm", "@default");
  EXPECT_EQ(none.verdict, Verdict::kDeny);
  EXPECT_NE(none.reason.find("no target is available"), std::string::npos) << none.reason;
  EXPECT_EQ(Eval(p, "test-standalone", "@default").targets,
            (std::vector<std::string>{"@dispvm:default-dvm", "default-dvm", "dom0",
                                      "test-invalid-dvm", "test-no-dvm", "test-relayvm1",
                                      "test-vm1", "test-vm2", "test-vm3", "test-vm4",
                                      "test2-relayvm1", "test2-relayvm2", "test2-vm1"}));
  EXPECT_EQ(Eval(p, "test2-vm1", "@default").targets,
            (std::vector<std::string>{"@dispvm:test-vm4", "test-standalone", "test-vm3"}));
}

TEST(AskCollection, DeniedDispVmComesBackThroughALaterDispVmAllow) {
  Policy p = MustParse("* * test-vm1 @default ask\n"
                       "* * test-vm1 @dispvm:default-dvm deny\n"
                       "* * test-vm1 @dispvm allow\n");
  EXPECT_EQ(Eval(p, "test-vm1", "@default").targets,
            std::vector<std::string>{"@dispvm:default-dvm"});
}

TEST(AskCollection, ExplicitTargetIsOfferedLiterallyAndDom0Normalised) {
  EXPECT_EQ(Eval(MustParse("* * @anyvm @anyvm ask target=@adminvm\n"), "test-vm1", "test-vm2")
                .targets,
            std::vector<std::string>{"dom0"});
  Decision d = Eval(MustParse("* * @anyvm @anyvm ask target=@dispvm\n"), "test-vm1", "test-vm2");
  EXPECT_EQ(d.targets, std::vector<std::string>{"@dispvm"});
  Decision chosen = ResolveAsk(d, "@dispvm", TestSystemInfo());
  EXPECT_EQ(chosen.verdict, Verdict::kDeny);
  EXPECT_TRUE(chosen.internal_failure);
  d = Eval(MustParse("* * @anyvm @anyvm ask target=no-such-vm\n"), "test-vm1", "test-vm2");
  EXPECT_TRUE(ResolveAsk(d, "no-such-vm", TestSystemInfo()).internal_failure);
}

TEST(AskCollection, AutostartNoKeepsOnlyRunningNonDisposables) {
  Decision d = Eval(MustParse("* * @anyvm @anyvm ask autostart=no\n"), "test-vm1", "test-vm2");
  EXPECT_EQ(d.targets, (std::vector<std::string>{"test-relayvm1", "test-remotevm1", "test-vm2",
                                                 "test2-relayvm1", "test2-relayvm2",
                                                 "test2-remotevm1", "test2-remotevm2",
                                                 "test2-vm1"}));
}

TEST(AskCollection, DefaultTargetOutsideTheListIsDroppedWithAWarning) {
  Decision d = Eval(MustParse("* * @anyvm @anyvm ask default_target=@dispvm\n"), "test-vm1",
                    "test-vm2");
  EXPECT_EQ(d.default_target, "@dispvm:default-dvm");
  d = Eval(MustParse("* * @anyvm test-vm2 ask target=test-vm2 default_target=test-vm3\n"),
           "test-vm1", "test-vm2");
  EXPECT_FALSE(d.default_target);
  ASSERT_EQ(d.warnings.size(), 1u);
  EXPECT_EQ(d.warnings[0], "warning: policy define default_target=test-vm3 at test.policy:1 but "
                           "it is not among allowed targets (test-vm2)");
  d = Eval(MustParse("* * @anyvm @anyvm ask target=dom0 default_target=@adminvm\n"), "test-vm1",
           "test-vm2");
  EXPECT_EQ(d.default_target, "dom0");
}

TEST(RemoteVm, AllowToARemoteVmGoesThroughItsRelay) {
  Policy p = MustParse("* * test-vm1 @anyvm allow user=someone\n");
  Decision d = Eval(p, "test-vm1", "test-remotevm1");
  EXPECT_EQ(d.answer,
            "user=DEFAULT\nresult=allow\ntarget=test-relayvm1\n"
            "target_uuid=uuid:355304b8-bd5e-4699-9a2b-b6864fc26f6b\nautostart=True\n"
            "requested_target=test-remotevm1\n"
            "service=qubesair.SSHProxy+test-remotevm1+test.Service+argument");
  EXPECT_FALSE(d.warnings.empty());
  d = Eval(p, "test-vm1", "test2-remotevm1");
  EXPECT_EQ(d.reason, "test2-remotevm1: transport RPC is not set");
  EXPECT_TRUE(d.notify);
}

TEST(RemoteVm, RequestedSourceIsCheckedAndReplacesTheSource) {
  Policy p = MustParse("* * test-remotevm1 test-vm2 allow\n* * test-relayvm1 test-vm2 deny\n");
  Decision d = Eval(p, "test-relayvm1", "test-vm2", "test.Service+argument", "test-remotevm1");
  EXPECT_EQ(d.answer, Allow("test-vm2", kVm2Uuid, "test-vm2") + "\npolicy_source=test-remotevm1");
  EXPECT_EQ(d.relay, "test-relayvm1");
  EXPECT_EQ(Eval(p, "test-relayvm1", "test-vm2", "test.Service+argument", "nope").reason,
            "unknown requested source qube 'nope'");
  EXPECT_EQ(Eval(p, "test-relayvm1", "test-vm2", "test.Service+argument", "test-vm1").reason,
            "test-vm1: requested source is only authorized for RemoteVM");
  d = Eval(p, "test-vm1", "test-vm2", "test.Service+argument", "test-remotevm1");
  EXPECT_EQ(d.reason, "test-vm1 is not a relay for test-remotevm1");
  EXPECT_TRUE(d.notify);
  // dom0 answers carry no policy_source.
  Policy to_dom0 = MustParse("* * test-remotevm1 @adminvm allow\n");
  EXPECT_EQ(Eval(to_dom0, "test-relayvm1", "dom0", "x", "test-remotevm1").answer,
            "user=DEFAULT\nresult=allow\ntarget=dom0\nautostart=True\nrequested_target=dom0");
}

TEST(Modes, JustEvaluateAndAssumeYes) {
  const SystemInfo& info = TestSystemInfo();
  Policy p = MustParse("* * test-vm1 test-vm3 allow\n* * @anyvm @anyvm ask\n");
  Decision allow = Eval(p, "test-vm1", "test-vm3");
  EXPECT_EQ(ApplyMode(allow, info, true, false).answer, "result=allow");
  Decision ask = Eval(p, "test-vm1", "test-vm2");
  Decision je = ApplyMode(ask, info, true, false);
  EXPECT_EQ(je.verdict, Verdict::kDeny);
  EXPECT_EQ(je.answer, "result=deny");
  EXPECT_EQ(ApplyMode(ask, info, false, true).answer, Allow("test-vm2", kVm2Uuid, "test-vm2"));
  EXPECT_EQ(ApplyMode(ask, info, true, true).answer, "result=allow");
  Decision def = ApplyMode(Eval(p, "test-vm1", "@default"), info, false, true);
  EXPECT_EQ(def.reason, "target @default is not a valid choice");
  EXPECT_EQ(ApplyMode(Eval(p, "test-vm2", "@adminvm"), info, false, true).verdict, Verdict::kDeny);
  EXPECT_EQ(ApplyMode(ask, info, false, false).verdict, Verdict::kAsk);
}

TEST(Modes, AgentRepliesResolveAnAsk) {
  const SystemInfo& info = TestSystemInfo();
  Decision ask = Eval(MustParse("* * @anyvm @anyvm ask notify=yes user=u\n"), "test-vm1",
                      "test-vm2");
  Decision a = ApplyAgentReply(ask, "allow:test-vm3", info);
  EXPECT_EQ(a.answer, Allow("test-vm3", kVm3Uuid, "test-vm2", "True", "u"));
  EXPECT_TRUE(a.notify);
  EXPECT_EQ(ApplyAgentReply(ask, "allow:dom0", info).reason, "target dom0 is not a valid choice");
  Decision d = ApplyAgentReply(ask, "deny", info);
  EXPECT_EQ(d.reason, "denied by the user test.policy:1");
  EXPECT_TRUE(d.notify);
  EXPECT_FALSE(DenyAsk(Eval(MustParse("* * @anyvm @anyvm ask\n"), "test-vm1", "test-vm2")).notify);
  EXPECT_EQ(ApplyAgentReply(ask, "maybe", info).reason, "invalid response");
}

TEST(Explain, JsonHasTheKeysInOrder) {
  Decision d = Eval(MustParse("* * test-vm1 test-vm2 allow\n"), "test-vm1", "test-vm2");
  EXPECT_EQ(ExplainJson(d, TestSystemInfo()),
            "{\"result\": \"allow\", \"rule\": \"test.policy:1\", \"reason\": null, \"targets\": "
            "null, \"default_target\": null, \"notify\": false, \"answer\": \"user=DEFAULT\\n"
            "result=allow\\ntarget=test-vm2\\ntarget_uuid=" +
                kVm2Uuid + "\\nautostart=True\\nrequested_target=test-vm2\"}");
}

// Index and linear walk must agree on random policies and requests.
TEST(CrossCheck, IndexedAndLinearWalksDecideTheSameOnRandomInput) {
  const std::vector<std::string> services = {"*", "a.Svc", "b.Svc", "c.Svc"};
  const std::vector<std::string> arguments = {"*", "+", "+x", "+y"};
  const std::vector<std::string> sources = {"*", "@anyvm", "@adminvm", "test-vm1", "test-vm2",
                                            "@tag:tag1", "@type:AppVM", "test-no-dvm",
                                            "uuid:c9024a97-9b15-46cc-8341-38d75d5d421b"};
  const std::vector<std::string> targets = {"*", "@anyvm", "@default", "@dispvm",
                                            "@dispvm:default-dvm", "@dispvm:@tag:tag3",
                                            "test-vm2", "test-vm3", "@tag:tag2", "dom0"};
  const std::vector<std::string> actions = {"allow", "deny", "ask", "allow target=test-vm4",
                                            "ask default_target=test-vm2", "allow autostart=no"};
  const std::vector<std::string> req_targets = {"", "@default", "@dispvm", "test-vm1", "test-vm2",
                                                "test-vm3", "dom0", "@adminvm",
                                                "@dispvm:test-vm3", "nope"};
  const std::vector<std::string> req_sources = {"test-vm1", "test-vm2", "test-vm3", "test-no-dvm",
                                                "dom0", "test-standalone"};
  std::mt19937 rng(12345);
  auto pick = [&](const std::vector<std::string>& v) { return v[rng() % v.size()]; };
  int compared = 0;
  for (int round = 0; round < 60; ++round) {
    std::string text;
    int n = 1 + static_cast<int>(rng() % 30);
    for (int i = 0; i < n; ++i) {
      std::string svc = pick(services);
      std::string arg = svc == "*" ? "*" : pick(arguments);
      std::string tgt = pick(targets);
      std::string act = pick(actions);
      if (tgt == "@default" && act.rfind("allow", 0) == 0) act = "allow target=test-vm1";
      text += svc + " " + arg + " " + pick(sources) + " " + tgt + " " + act + "\n";
    }
    Policy p = MustParse(text);
    for (int k = 0; k < 40; ++k) {
      std::string svc = pick(services);
      if (svc == "*") svc = "d.Svc";
      std::string arg = pick(arguments);
      if (arg == "*") arg = "";
      Eval(p, pick(req_sources), pick(req_targets), svc + arg);  // compares both walks
      ++compared;
    }
  }
  EXPECT_EQ(compared, 2400);
}

}  // namespace
}  // namespace qrexec::policy
