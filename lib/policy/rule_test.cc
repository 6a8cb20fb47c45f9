// Rule lines: fields, parameters, defaults, the malformed-policy corpus with
// the messages of policy-language.md §4.13, and the printed form.
#include <gtest/gtest.h>

#include "policy/test_util.h"

namespace qrexec::policy {
namespace {

using testing::MustParse;
using testing::ParseError;

const Rule& Only(const Policy& policy) {
  EXPECT_EQ(policy.size(), 1u);
  static const Rule kEmpty;
  return policy.size() ? policy.rules()[0] : kEmpty;
}

TEST(Rule, ParsesAllFiveColumnsAndParameters) {
  Policy p = MustParse("test.Service +arg @tag:t1 @dispvm:@tag:t2 ask target=test-vm1 "
                       "default_target=@dispvm user=user==x notify=yes autostart=no\n");
  const Rule& r = Only(p);
  EXPECT_EQ(r.service, "test.Service");
  EXPECT_EQ(r.argument, "+arg");
  EXPECT_EQ(r.source.kind, TokenKind::kTag);
  EXPECT_EQ(r.target.kind, TokenKind::kDispVmTag);
  EXPECT_EQ(r.action, Action::kAsk);
  EXPECT_EQ(r.redirect->text, "test-vm1");
  EXPECT_EQ(r.default_target->kind, TokenKind::kDispVm);
  EXPECT_EQ(r.user, "user==x");
  EXPECT_TRUE(r.notify);
  EXPECT_FALSE(r.autostart);
  EXPECT_EQ(r.location.ToString(), "test.policy:1");
}

TEST(Rule, DefaultsOfNotifyAndAutostartDependOnTheAction) {
  EXPECT_TRUE(Only(MustParse("* * @anyvm @anyvm deny")).notify);
  EXPECT_FALSE(Only(MustParse("* * @anyvm @anyvm allow")).notify);
  EXPECT_FALSE(Only(MustParse("* * @anyvm @anyvm ask")).notify);
  EXPECT_FALSE(Only(MustParse("* * @anyvm @anyvm deny notify=no")).notify);
  EXPECT_TRUE(Only(MustParse("* * @anyvm @anyvm allow notify=yes")).notify);
  EXPECT_TRUE(Only(MustParse("* * @anyvm @anyvm allow")).autostart);
  EXPECT_FALSE(Only(MustParse("* * @anyvm @anyvm ask autostart=no")).autostart);
  EXPECT_FALSE(Only(MustParse("* * @anyvm @anyvm allow user=")).user.has_value());
}

TEST(Rule, ArgumentPlusAloneAndStarForms) {
  EXPECT_EQ(Only(MustParse("svc + @anyvm @anyvm allow")).argument, "+");
  EXPECT_FALSE(Only(MustParse("svc * @anyvm @anyvm allow")).argument.has_value());
  EXPECT_FALSE(Only(MustParse("* * @anyvm @anyvm allow")).service.has_value());
  EXPECT_EQ(Only(MustParse("svc +a+b.c_d-e @anyvm @anyvm allow")).argument, "+a+b.c_d-e");
}

struct Bad {
  const char* line;
  const char* message;
};

// The malformed corpus: every syntax message of §4.13 that a line can raise.
const Bad kBadLines[] = {
    {"* * @anyvm @anyvm", "wrong number of fields"},
    {"test.Service", "wrong number of fields"},
    {"a+b * @anyvm @anyvm allow", "service 'a+b' contains invalid characters: ('+',)"},
    {"a!b$ * @anyvm @anyvm allow", "service 'a!b$' contains invalid characters: ('!', '$')"},
    {"svc +a/b @anyvm @anyvm allow", "argument '+a/b' contains invalid characters: ('/',)"},
    {"svc arg @anyvm @anyvm allow", "argument 'arg' does not start with +"},
    {"* +arg @anyvm @anyvm allow", "only * argument allowed for * service"},
    {"* * @dispvm @anyvm allow", "invalid source token: '@dispvm'"},
    {"* * @default @anyvm allow", "invalid source token: '@default'"},
    {"* * @uuid:x @anyvm allow", "invalid source token: '@uuid:x'"},
    {"* * @anyvm @foo allow", "invalid target token: '@foo'"},
    {"* * @tag: @anyvm allow", "invalid empty @tag: token: '@tag:'"},
    {"* * @anyvm @type: allow", "invalid empty @type: token: '@type:'"},
    {"* * @anyvm @anyvm permit", "invalid action: permit"},
    {"* * @anyvm @anyvm Allow", "invalid action: Allow"},
    {"* * @anyvm @anyvm allow,target=x", "invalid action: allow,target=x"},
    {"* * @anyvm @anyvm allow # comment", "invalid action parameter syntax: '#'"},
    {"* * @anyvm @anyvm allow target", "invalid action parameter syntax: 'target'"},
    {"* * @anyvm @anyvm allow user=a user=b", "parameter given twice: 'user'"},
    {"* * @anyvm @anyvm allow notify=Yes", "'notify' is 'Yes', but can be only 'yes' or 'no'"},
    {"* * @anyvm @anyvm ask autostart=1", "'autostart' is '1', but can be only 'yes' or 'no'"},
    {"* * @anyvm @anyvm deny autostart=maybe",
     "'autostart' is 'maybe', but can be only 'yes' or 'no'"},
    {"* * @anyvm @anyvm deny target=x", "invalid parameters for action Deny: ['target=x']"},
    {"* * @anyvm @anyvm deny user=x notify=no",
     "invalid parameters for action Deny: ['user=x', 'notify=no']"},
    {"* * @anyvm @anyvm allow default_target=x",
     "invalid parameters for action Allow: ['default_target=x']"},
    {"* * @anyvm @anyvm ask foo=bar", "invalid parameters for action Ask: ['foo=bar']"},
    {"* * @anyvm @anyvm allow target=", "invalid empty redirect token"},
    {"* * @anyvm @anyvm allow target=@anyvm", "invalid redirect token: '@anyvm'"},
    {"* * @anyvm @anyvm ask default_target=@default", "invalid redirect token: '@default'"},
    {"* * @anyvm @anyvm ask target=*", "invalid redirect token: '*'"},
    {"* * @anyvm @default allow", "allow action for @default rule must specify target= option"},
    {"!foo", "invalid directive"},
    {"!include", "invalid number of params"},
    {"!include a b", "invalid number of params"},
    {"!include-dir", "invalid number of params"},
    {"!include-service svc +arg", "invalid number of params"},
    {"!include-service * +arg file", "only * argument allowed for * service"},
    {"!include-service svc arg file", "argument 'arg' does not start with +"},
    {"!compat-4.0 x", "invalid number of params"},
    {"!include /nonexistent/file", "not a file: /nonexistent/file"},
    {"!include-dir /nonexistent/dir", "not a directory: /nonexistent/dir"},
};

TEST(Rule, EachMalformedLineIsRefusedWithItsMessage) {
  for (const Bad& bad : kBadLines) {
    EXPECT_EQ(ParseError(std::string("# comment\n\n") + bad.line + "\n"),
              std::string("test.policy:3: ") + bad.message)
        << bad.line;
  }
}

TEST(Rule, ValidationOrderReportsTheFirstProblem) {
  // service before source, source before target, target before action.
  EXPECT_EQ(ParseError("a+ * @dispvm @foo permit"),
            "test.policy:1: service 'a+' contains invalid characters: ('+',)");
  EXPECT_EQ(ParseError("* * @dispvm @foo permit"), "test.policy:1: invalid source token: '@dispvm'");
  EXPECT_EQ(ParseError("* * @anyvm @foo permit"), "test.policy:1: invalid target token: '@foo'");
  EXPECT_EQ(ParseError("* * @anyvm @anyvm permit x"), "test.policy:1: invalid action: permit");
}

TEST(Rule, AskOnDefaultWithoutTargetIsLegal) {
  EXPECT_EQ(Only(MustParse("* * @anyvm @default ask")).action, Action::kAsk);
}

TEST(Rule, PrintedFormOmitsNotifyAndAutostart) {
  EXPECT_EQ(Only(MustParse("* * @anyvm @default allow target=x user=u notify=yes")).ToString(),
            "None\t*\t@anyvm\t@default\tallow target=x user=u");
  EXPECT_EQ(Only(MustParse("svc +a vm1 @anyvm ask target=a default_target=a user=u")).ToString(),
            "svc\t+a\tvm1\t@anyvm\task target=a default_target=a user=u");
  EXPECT_EQ(Only(MustParse("svc * vm1 vm2 deny notify=no")).ToString(),
            "svc\t*\tvm1\tvm2\tdeny");
}

}  // namespace
}  // namespace qrexec::policy
