// Loading policy sets from directories (policy-language.md §1).
#include <sys/stat.h>

#include <gtest/gtest.h>

#include "policy/test_util.h"

namespace qrexec::policy {
namespace {

using testing::TempDir;

std::vector<std::string> Locations(const Policy& p) {
  std::vector<std::string> out;
  for (const Rule& r : p.rules()) out.push_back(r.location.ToString());
  return out;
}

Result<Policy> Load(const std::vector<std::string>& dirs, const std::string& legacy = "/nonexistent") {
  LoadOptions o;
  o.dirs = dirs;
  o.legacy_dir = legacy;
  return LoadPolicy(o);
}

TEST(Loader, FilesLoadInByteOrderAndTheFirstDirectoryWinsByName) {
  TempDir run, etc;
  run.Write("20-b.policy", "* * @anyvm @anyvm allow\n");
  etc.Write("20-b.policy", "* * @anyvm @anyvm deny\n");
  etc.Write("10-a.policy", "# c\n* * @anyvm @anyvm deny\n");
  etc.Write("10_a.policy", "* * @anyvm @anyvm deny\n");
  etc.Write("10.a.policy", "* * @anyvm @anyvm deny\n");
  etc.Write("2-x.policy", "* * @anyvm @anyvm deny\n");
  auto p = Load({run.path(), etc.path()});
  ASSERT_TRUE(p) << p.error().message;
  EXPECT_EQ(Locations(*p),
            (std::vector<std::string>{etc.path() + "/10-a.policy:2", etc.path() + "/10.a.policy:1",
                                      etc.path() + "/10_a.policy:1", etc.path() + "/2-x.policy:1",
                                      run.path() + "/20-b.policy:1"}));
}

TEST(Loader, NonPolicyFilesDotfilesAndDirectoriesAreIgnored) {
  TempDir d;
  d.Write("README", "garbage");
  d.Write("foo.POLICY", "garbage");
  d.Write(".hidden.policy", "garbage");
  d.Write(".swp", "garbage");
  d.Mkdir("include");
  d.Mkdir("dir.policy");
  d.Write("30-user.policy", "* * @anyvm @anyvm allow\n");
  auto p = Load({d.path()});
  ASSERT_TRUE(p) << p.error().message;
  EXPECT_EQ(p->size(), 1u);
}

TEST(Loader, AnInvalidFileNameFailsTheWholeLoadAsAccessDenied) {
  TempDir d;
  d.Write("30-user.policy", "* * @anyvm @anyvm allow\n");
  d.Write("60-Upper.policy", "* * @anyvm @anyvm allow\n");
  auto p = Load({d.path()});
  ASSERT_FALSE(p);
  EXPECT_EQ(p.error().kind, ErrorKind::kRefused);
  EXPECT_EQ(p.error().message, "invalid filename: " + d.path() + "/60-Upper.policy");
  EXPECT_TRUE(DenyForLoadError(p.error(), MakeRequest("a", "b", "c")).notify);
}

TEST(Loader, AMissingDirectoryFailsTheLoad) {
  TempDir d;
  auto p = Load({d.path() + "/missing"});
  ASSERT_FALSE(p);
  EXPECT_EQ(p.error().kind, ErrorKind::kRefused);
  EXPECT_EQ(p.error().message.rfind("failed to load " + d.path() + "/missing file: [Errno 2]", 0),
            0u)
      << p.error().message;
}

TEST(Loader, IncludesResolveAgainstTheTopLevelDirectory) {
  TempDir d;
  d.Write("include/a", "!include include/b\n* * vm-a @anyvm allow\n");
  d.Write("include/b", "* * vm-b @anyvm allow\n");
  d.Write("30-user.policy", "!include include/a\n* * vm-c @anyvm allow\n");
  auto p = Load({d.path()});
  ASSERT_TRUE(p) << p.error().message;
  ASSERT_EQ(p->size(), 3u);
  EXPECT_EQ(p->rules()[0].source.text, "vm-b");
  EXPECT_EQ(p->rules()[0].location.ToString(), d.path() + "/include/b:1");
  EXPECT_EQ(p->rules()[2].location.ToString(), d.path() + "/30-user.policy:2");
}

TEST(Loader, IncludeDirLoadsPolicyFilesInOrder) {
  TempDir d;
  d.Write("sub/b.policy", "* * vm-b @anyvm allow\n");
  d.Write("sub/a.policy", "* * vm-a @anyvm allow\n");
  d.Write("sub/ignored", "garbage\n");
  d.Write("30-user.policy", "!include-dir sub\n");
  auto p = Load({d.path()});
  ASSERT_TRUE(p) << p.error().message;
  ASSERT_EQ(p->size(), 2u);
  EXPECT_EQ(p->rules()[0].source.text, "vm-a");
  d.Write("sub/Bad.policy", "\n");
  auto bad = Load({d.path()});
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().message, "invalid filename: " + d.path() + "/sub/Bad.policy");
}

TEST(Loader, IncludeServiceReadsOldFormatWithDollarAndCommaSyntax) {
  TempDir d;
  d.Write("include/svc", "# old\n$anyvm $tag:x allow,target=vm1,user=u\n"
                         "$include:include/more\n");
  d.Write("include/more", "vm2 $dispvm:vm3 deny\n");
  d.Write("30-user.policy", "!include-service test.Svc +arg include/svc\n");
  auto p = Load({d.path()});
  ASSERT_TRUE(p) << p.error().message;
  ASSERT_EQ(p->size(), 2u);
  const Rule& r = p->rules()[0];
  EXPECT_EQ(r.service, "test.Svc");
  EXPECT_EQ(r.argument, "+arg");
  EXPECT_EQ(r.source.kind, TokenKind::kAnyVm);
  EXPECT_EQ(r.target.kind, TokenKind::kTag);
  EXPECT_EQ(r.redirect->text, "vm1");
  EXPECT_EQ(r.user, "u");
  EXPECT_EQ(p->rules()[1].target.kind, TokenKind::kDispVmTemplate);
  EXPECT_EQ(p->rules()[1].location.ToString(), d.path() + "/include/more:1");
}

TEST(Loader, OldFormatFilesRefuseOtherDirectivesAndAtInclude) {
  TempDir d;
  d.Write("include/svc", "!compat-4.0\n");
  d.Write("30-user.policy", "!include-service svc * include/svc\n");
  EXPECT_EQ(Load({d.path()}).error().message, d.path() + "/include/svc:1: invalid directive");
  d.Write("include/svc", "@include:foo\n");
  EXPECT_EQ(Load({d.path()}).error().message, d.path() + "/include/svc:1: wrong number of fields");
}

TEST(Loader, IncludeCyclesAreRefusedNotFollowedForever) {
  TempDir d;
  d.Write("include/a", "!include include/b\n");
  d.Write("include/b", "!include include/a\n");
  d.Write("30-user.policy", "!include include/a\n");
  auto p = Load({d.path()});
  ASSERT_FALSE(p);
  EXPECT_EQ(p.error().kind, ErrorKind::kMalformed);
  EXPECT_NE(p.error().message.find("include cycle"), std::string::npos) << p.error().message;
  EXPECT_FALSE(DenyForLoadError(p.error(), MakeRequest("a", "b", "c")).notify);

  d.Write("30-user.policy", "!include 30-user.policy\n");
  EXPECT_FALSE(Load({d.path()}));
}

TEST(Loader, NonUtf8PolicyTextIsRefused) {
  TempDir d;
  d.Write("30-user.policy", "* * vm\xff @anyvm allow\n");
  auto p = Load({d.path()});
  ASSERT_FALSE(p);
  EXPECT_EQ(p.error().kind, ErrorKind::kMalformed);
}

TEST(Loader, LoneCarriageReturnEndsALine) {
  TempDir d;
  d.Write("30-user.policy", "# comment\r* * @anyvm @anyvm allow\r\n* * @anyvm @anyvm deny");
  auto p = Load({d.path()});
  ASSERT_TRUE(p) << p.error().message;
  EXPECT_EQ(Locations(*p), (std::vector<std::string>{d.path() + "/30-user.policy:2",
                                                     d.path() + "/30-user.policy:3"}));
}

TEST(Loader, SyntaxErrorsNameTheFileAndLine) {
  TempDir d;
  d.Write("30-user.policy", "\n\n* * @anyvm @anyvm allow #x\n");
  EXPECT_EQ(Load({d.path()}).error().message,
            d.path() + "/30-user.policy:3: invalid action parameter syntax: '#x'");
}

TEST(Loader, Compat40OrdersLegacyFilesAndAddsImplicitDenies) {
  TempDir d, legacy;
  legacy.Write("z.Svc", "$anyvm $anyvm allow\n");
  legacy.Write("z.Svc+", "$anyvm $anyvm deny\n");
  legacy.Write("z.Svc+b", "$anyvm $anyvm ask\n");
  legacy.Write("z.Svc+a", "$anyvm $anyvm allow,target=dom0\n");
  legacy.Write("a.Svc.rpmsave", "garbage\n");
  legacy.Write(".hidden", "garbage\n");
  legacy.Write("bad name", "garbage\n");
  d.Write("35-compat.policy", "!compat-4.0\n");
  d.Write("90-default.policy", "* * @anyvm @anyvm deny\n");
  auto p = Load({d.path()}, legacy.path());
  ASSERT_TRUE(p) << p.error().message;
  const std::string L = legacy.path();
  EXPECT_EQ(Locations(*p),
            (std::vector<std::string>{
                L + "/z.Svc+:1", L + "/z.Svc+:None", L + "/z.Svc+:None", L + "/z.Svc+a:1",
                L + "/z.Svc+a:None", L + "/z.Svc+a:None", L + "/z.Svc+b:1", L + "/z.Svc+b:None",
                L + "/z.Svc+b:None", L + "/z.Svc:1", d.path() + "/90-default.policy:1"}));
  EXPECT_EQ(p->rules()[1].target.kind, TokenKind::kAnyVm);
  EXPECT_EQ(p->rules()[2].target.kind, TokenKind::kAdminVm);
  EXPECT_EQ(p->rules()[2].argument, "+");
  EXPECT_FALSE(p->rules()[9].argument.has_value());
}

TEST(Loader, ImplicitLegacyDenyNamesTheFileWithLineNone) {
  TempDir d, legacy;
  legacy.Write("test.Service+argument", "test-vm9 @anyvm allow\n");
  d.Write("35-compat.policy", "!compat-4.0\n");
  auto p = Load({d.path()}, legacy.path());
  ASSERT_TRUE(p) << p.error().message;
  Decision dec = testing::Eval(*p, "test-vm1", "test-vm2");
  EXPECT_EQ(dec.reason, "denied by policy " + legacy.path() + "/test.Service+argument:None");
}

TEST(Loader, CompatWithAMissingLegacyDirectoryFailsTheLoad) {
  TempDir d, legacy;
  d.Write("35-compat.policy", "!compat-4.0\n");
  d.Write("90-default.policy", "* * @anyvm @anyvm allow\n");
  const std::string missing = legacy.path() + "/absent";
  auto p = Load({d.path()}, missing);
  ASSERT_FALSE(p);
  EXPECT_NE(p.error().message.find(missing), std::string::npos) << p.error().message;
}

TEST(Loader, CompatWithAnEmptyLegacyDirectoryAddsNoRules) {
  TempDir d, legacy;
  d.Write("35-compat.policy", "!compat-4.0\n");
  d.Write("90-default.policy", "* * @anyvm @anyvm deny\n");
  auto p = Load({d.path()}, legacy.path());
  ASSERT_TRUE(p) << p.error().message;
  EXPECT_EQ(Locations(*p), (std::vector<std::string>{d.path() + "/90-default.policy:1"}));
}

TEST(Loader, CompatCanBeSwitchedOffAndThenReadsNoLegacyDirectory) {
  TempDir d;
  d.Write("35-compat.policy", "!compat-4.0\n");
  d.Write("90-default.policy", "* * @anyvm @anyvm deny\n");
  LoadOptions options;
  options.dirs = {d.path()};
  options.legacy_dir = d.path() + "/absent";
  options.compat40 = false;
  auto p = LoadPolicy(options);
  ASSERT_TRUE(p) << p.error().message;
  EXPECT_EQ(Locations(*p), (std::vector<std::string>{d.path() + "/90-default.policy:1"}));
  // The directive is still checked.
  d.Write("35-compat.policy", "!compat-4.0 extra\n");
  EXPECT_FALSE(LoadPolicy(options));
}

TEST(Loader, ValidFileNamesFollowTheCharacterRule) {
  EXPECT_TRUE(IsValidPolicyFileName("30-user_x.y.policy"));
  EXPECT_FALSE(IsValidPolicyFileName("30-User.policy"));
  EXPECT_FALSE(IsValidPolicyFileName("a+b.policy"));
  EXPECT_FALSE(IsValidPolicyFileName("a b.policy"));
  EXPECT_FALSE(IsValidPolicyFileName("t\xc3\xa9.policy"));
}

}  // namespace
}  // namespace qrexec::policy

namespace qrexec::policy {
namespace {

TEST(Loader, RuleLocationsSpellTheDirectoryAsPathlibDoes) {
  testing::TempDir d;
  d.Write("p/30-user.policy", "* * @anyvm @anyvm allow\n");
  LoadOptions o;
  o.dirs = {d.path() + "/./p//"};
  auto p = LoadPolicy(o);
  ASSERT_TRUE(p) << p.error().message;
  EXPECT_EQ(p->rules()[0].location.file, d.path() + "/p/30-user.policy");
}

}  // namespace
}  // namespace qrexec::policy
