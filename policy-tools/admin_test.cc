// qubes-policy-admin run as the dom0 service it is: the real binary with the
// service environment qrexec sets, against a temporary policy directory, and
// once through qrexec-client's dom0-to-dom0 service path.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/core.h>

#include <string>

#include "harness.h"
#include "policy_admin.h"
#include "sha256.h"

namespace qrexec::policy_tools {
namespace {

class PolicyAdminTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(::mkdir(policy_dir().c_str(), 0755), 0);
    ASSERT_EQ(::mkdir((policy_dir() + "/include").c_str(), 0755), 0);
  }
  std::string policy_dir() const { return dir_ / "policy.d"; }
  std::string PolicyFile(const std::string& name) const { return policy_dir() + "/" + name; }

  harness::RunResult Call(const std::string& full_name, std::string_view payload = {}) {
    harness::SpawnOptions options;
    options.argv = {harness::BinPath("qubes-policy-admin")};
    options.env = {{"QREXEC_POLICY_DIR", policy_dir()},
                   {"QREXEC_POLICY_ADMIN_LOG", dir_ / "admin.log"},
                   {"QREXEC_SERVICE_FULL_NAME", full_name},
                   {"QREXEC_REMOTE_DOMAIN", "dom0"}};
    return harness::RunProgram(options, payload);
  }

  std::string TokenOf(const std::string& path) { return PolicyToken(harness::ReadFile(path)); }

  harness::TempDir dir_;
};

TEST(Sha256, KnownVectors) {
  EXPECT_EQ(Sha256Hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(Sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(Sha256Hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  EXPECT_EQ(Sha256Hex(std::string(1000000, 'a')),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST_F(PolicyAdminTest, ListNamesPolicyFilesWithoutSuffixAndIncludeFilesAsTheyAre) {
  harness::WriteFile(PolicyFile("b.policy"), "");
  harness::WriteFile(PolicyFile("a.policy"), "");
  harness::WriteFile(PolicyFile("README"), "");
  harness::WriteFile(PolicyFile("include/inc"), "");
  auto list = Call("policy.List");
  EXPECT_EQ(list.exit_code, 0);
  EXPECT_EQ(list.out, "a\nb\n");
  auto include_list = Call("policy.include.List");
  EXPECT_EQ(include_list.exit_code, 0);
  EXPECT_EQ(include_list.out, "inc\n");
  EXPECT_NE(harness::ReadFile(dir_ / "admin.log").find("policy.List+ (dom0)"), std::string::npos);
}

TEST_F(PolicyAdminTest, GetAnswersTheTokenLineThenTheFile) {
  harness::WriteFile(PolicyFile("abc.policy"), "abc");
  auto get = Call("policy.Get+abc");
  EXPECT_EQ(get.exit_code, 0);
  EXPECT_EQ(get.out, "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\nabc");
  auto missing = Call("policy.Get+nothere");
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_EQ(missing.err, "PolicyAdminFileNotFoundException Not found: " + PolicyFile("nothere.policy"));
}

TEST_F(PolicyAdminTest, ReplaceChecksTheToken) {
  const std::string rule = "test.Svc * @anyvm @anyvm deny\n";
  EXPECT_EQ(Call("policy.Replace+user", "new\n" + rule).exit_code, 0);
  EXPECT_EQ(harness::ReadFile(PolicyFile("user.policy")), rule);
  auto again = Call("policy.Replace+user", "new\n" + rule);
  EXPECT_EQ(again.exit_code, 1);
  EXPECT_TRUE(again.err.starts_with("PolicyAdminTokenException ")) << again.err;
  auto wrong = Call("policy.Replace+user", "sha256:00\n" + rule);
  EXPECT_EQ(wrong.err, "PolicyAdminTokenException Token mismatch");
  auto bogus = Call("policy.Replace+user", "md5:00\n" + rule);
  EXPECT_EQ(bogus.err, "PolicyAdminProtocolException Unrecognized token");
  auto no_line = Call("policy.Replace+user", "any");
  EXPECT_TRUE(no_line.err.starts_with("PolicyAdminProtocolException ")) << no_line.err;
  const std::string second = "test.Svc * @anyvm @anyvm allow\n";
  EXPECT_EQ(Call("policy.Replace+user", TokenOf(PolicyFile("user.policy")) + "\n" + second).exit_code, 0);
  EXPECT_EQ(harness::ReadFile(PolicyFile("user.policy")), second);
  EXPECT_EQ(Call("policy.Replace+user", "any\n" + rule).exit_code, 0);
  EXPECT_EQ(harness::ReadFile(PolicyFile("user.policy")), rule);
  auto absent = Call("policy.Replace+other", TokenOf(PolicyFile("user.policy")) + "\n" + rule);
  EXPECT_TRUE(absent.err.starts_with("PolicyAdminTokenException ")) << absent.err;
  EXPECT_FALSE(harness::PathExists(PolicyFile(".!user.policy")));
}

TEST_F(PolicyAdminTest, ReplaceRefusesAPolicyThatDoesNotLoadAndKeepsTheOldFile) {
  harness::WriteFile(PolicyFile("user.policy"), "test.Svc * @anyvm @anyvm deny\n");
  auto bad = Call("policy.Replace+user", "any\ntest.Svc * @anyvm\n");
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_TRUE(bad.err.starts_with("PolicyAdminSyntaxException Policy change validation failed: "))
      << bad.err;
  EXPECT_NE(bad.err.find("user.policy:1: wrong number of fields"), std::string::npos) << bad.err;
  EXPECT_EQ(harness::ReadFile(PolicyFile("user.policy")), "test.Svc * @anyvm @anyvm deny\n");
  // An include file is checked in the context it is included in.
  harness::WriteFile(PolicyFile("30-inc.policy"), "!include-service test.Svc * include/svc\n");
  harness::WriteFile(PolicyFile("include/svc"), "@anyvm @anyvm deny\n");
  auto new_format = Call("policy.include.Replace+svc", "any\ntest.Svc * @anyvm @anyvm deny\n");
  EXPECT_TRUE(new_format.err.starts_with("PolicyAdminSyntaxException ")) << new_format.err;
  EXPECT_EQ(Call("policy.include.Replace+svc", "any\n@anyvm @anyvm allow\n").exit_code, 0);
  EXPECT_EQ(harness::ReadFile(PolicyFile("include/svc")), "@anyvm @anyvm allow\n");
}

TEST_F(PolicyAdminTest, ANewFileMayIncludeANewIncludeOnlyOnceThatExists) {
  auto dangling = Call("policy.Replace+30-x", "new\n!include include/later\n");
  EXPECT_TRUE(dangling.err.starts_with("PolicyAdminSyntaxException ")) << dangling.err;
  EXPECT_EQ(Call("policy.include.Replace+later", "new\ntest.A * @anyvm @anyvm deny\n").exit_code, 0);
  EXPECT_EQ(Call("policy.Replace+30-x", "new\n!include include/later\n").exit_code, 0);
}

TEST_F(PolicyAdminTest, RemoveChecksTheTokenAndRefusesToBreakAnInclude) {
  harness::WriteFile(PolicyFile("30-inc.policy"), "!include include/part\n");
  harness::WriteFile(PolicyFile("include/part"), "test.A * @anyvm @anyvm deny\n");
  auto still_used = Call("policy.include.Remove+part", "any");
  EXPECT_EQ(still_used.exit_code, 1);
  EXPECT_NE(still_used.err.find("including a file that will be removed"), std::string::npos)
      << still_used.err;
  EXPECT_TRUE(harness::PathExists(PolicyFile("include/part")));
  EXPECT_EQ(Call("policy.Remove+30-inc", "sha256:ab").err, "PolicyAdminTokenException Token mismatch");
  EXPECT_EQ(Call("policy.Remove+30-inc", TokenOf(PolicyFile("30-inc.policy"))).exit_code, 0);
  EXPECT_FALSE(harness::PathExists(PolicyFile("30-inc.policy")));
  EXPECT_EQ(Call("policy.include.Remove+part", "any").exit_code, 0);
  auto gone = Call("policy.include.Remove+part", "any");
  EXPECT_TRUE(gone.err.starts_with("PolicyAdminFileNotFoundException ")) << gone.err;
}

TEST_F(PolicyAdminTest, NamesCannotLeaveTheDirectory) {
  auto traversal = Call("policy.Get+../x");
  EXPECT_EQ(traversal.exit_code, 1);
  EXPECT_TRUE(traversal.err.starts_with("PolicyAdminProtocolException Invalid argument")) << traversal.err;
  auto dotted = Call("policy.Get+a.b");
  EXPECT_TRUE(dotted.err.starts_with("PolicyAdminInvalidFileNameException ")) << dotted.err;
  auto empty = Call("policy.include.Get");
  EXPECT_TRUE(empty.err.starts_with("PolicyAdminInvalidFileNameException ")) << empty.err;
  harness::WriteFile(dir_ / "outside", "secret");
  ASSERT_EQ(::symlink((dir_ / "outside").c_str(), PolicyFile("include/link").c_str()), 0);
  auto link = Call("policy.include.Get+link");
  EXPECT_TRUE(link.err.starts_with("PolicyAdminInvalidFilePathException ")) << link.err;
  EXPECT_EQ(link.out, "");
}

TEST_F(PolicyAdminTest, MethodsRefuseArgumentsAndPayloadsTheyDoNotTake) {
  EXPECT_EQ(Call("policy.List+x").err, "PolicyAdminProtocolException Unexpected argument");
  EXPECT_EQ(Call("policy.Get+x", "data").err, "PolicyAdminProtocolException Unexpected payload");
  EXPECT_EQ(Call("policy.Frobnicate").err,
            "PolicyAdminProtocolException unrecognized method: policy.Frobnicate");
  EXPECT_EQ(Call("policy.include.GetFiles+x").exit_code, 1);
}

TEST_F(PolicyAdminTest, GetFilesNamesTheFilesWithRulesForTheService) {
  harness::WriteFile(PolicyFile("10-a.policy"), "test.A * @anyvm @anyvm deny\n");
  harness::WriteFile(PolicyFile("20-b.policy"),
                     "test.B * @anyvm @anyvm deny\n!include include/shared\n");
  harness::WriteFile(PolicyFile("include/shared"), "test.A +x @anyvm @anyvm deny\n");
  harness::WriteFile(PolicyFile("90-any.policy"), "* * @anyvm @anyvm deny\n");
  auto files = Call("policy.GetFiles+test.A");
  EXPECT_EQ(files.exit_code, 0);
  EXPECT_EQ(files.out, "10-a\nshared\n90-any\n");
  EXPECT_TRUE(Call("policy.GetFiles+test.A+x").err.starts_with("PolicyAdminProtocolException "));
  EXPECT_TRUE(Call("policy.GetFiles").err.starts_with("PolicyAdminProtocolException "));
}

TEST_F(PolicyAdminTest, AnInternalFailureExitsTwo) {
  ASSERT_EQ(::rmdir((policy_dir() + "/include").c_str()), 0);
  ASSERT_EQ(::rmdir(policy_dir().c_str()), 0);
  auto result = Call("policy.List");
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_NE(result.err.find("Internal error"), std::string::npos) << result.err;
}

// The service reached the way a dom0 caller reaches it: qrexec-client runs
// /etc/qubes-rpc/policy.Get (here a wrapper in QREXEC_SERVICE_PATH, since
// qrexec clears QREXEC_* variables from a service's environment).
TEST_F(PolicyAdminTest, ServesOverTheDom0ServicePath) {
  harness::WriteFile(PolicyFile("user.policy"), "test.Svc * @anyvm @anyvm deny\n");
  for (const char* service : {"policy.Get", "policy.Replace"})
    harness::WriteScript(dir_ / fmt::format("rpc/{}", service),
                         fmt::format("QREXEC_POLICY_DIR='{}' QREXEC_POLICY_ADMIN_LOG='{}' exec '{}'\n",
                                     policy_dir(), dir_ / "admin.log",
                                     harness::BinPath("qubes-policy-admin")));
  harness::SpawnOptions options;
  options.argv = {harness::BinPath("qrexec-client"), "--socket-dir=" + dir_.path(), "-d", "dom0",
                  "DEFAULT:QUBESRPC policy.Replace+user dom0"};
  options.env = {{"QREXEC_SERVICE_PATH", dir_ / "rpc"}};
  auto replace = harness::RunProgram(options, "any\ntest.Svc * @anyvm @anyvm allow\n");
  EXPECT_EQ(replace.exit_code, 0) << replace.err;
  options.argv.back() = "DEFAULT:QUBESRPC policy.Get+user dom0";
  auto get = harness::RunProgram(options);
  EXPECT_EQ(get.exit_code, 0) << get.err;
  EXPECT_EQ(get.out, TokenOf(PolicyFile("user.policy")) + "\ntest.Svc * @anyvm @anyvm allow\n");
  options.argv.back() = "DEFAULT:QUBESRPC policy.Get+none dom0";
  auto missing = harness::RunProgram(options);
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_TRUE(missing.err.starts_with("PolicyAdminFileNotFoundException ")) << missing.err;
}

// qubes-policy end to end: the tool runs qrexec-client (beside it in the
// build tree), which runs the service wrappers from QREXEC_SERVICE_PATH.
class QubesPolicyToolTest : public PolicyAdminTest {
 protected:
  void SetUp() override {
    PolicyAdminTest::SetUp();
    for (const char* method : {"List", "Get", "Replace", "Remove"})
      for (const char* prefix : {"policy.", "policy.include."})
        harness::WriteScript(
            dir_ / fmt::format("rpc/{}{}", prefix, method),
            fmt::format("QREXEC_POLICY_DIR='{}' QREXEC_POLICY_ADMIN_LOG='{}' exec '{}'\n",
                        policy_dir(), dir_ / "admin.log", harness::BinPath("qubes-policy-admin")));
  }
  harness::RunResult Tool(std::vector<std::string> args, std::string_view input = {}) {
    harness::SpawnOptions options;
    options.argv = {harness::BinPath("qubes-policy")};
    options.argv.insert(options.argv.end(), args.begin(), args.end());
    options.env = {{"QREXEC_SERVICE_PATH", dir_ / "rpc"}};
    return harness::RunProgram(options, input);
  }
};

TEST_F(QubesPolicyToolTest, ListsGetsReplacesAndRemoves) {
  EXPECT_EQ(Tool({}).out, "\n");
  harness::WriteFile(PolicyFile("file1.policy"), "");
  harness::WriteFile(PolicyFile("file2.policy"), "");
  EXPECT_EQ(Tool({"--list"}).out, "file1\nfile2\n");
  auto replace = Tool({"-r", "file1"}, "srv +arg src dst deny\n\n");
  EXPECT_EQ(replace.exit_code, 0) << replace.err;
  EXPECT_EQ(Tool({"-g", "file1"}).out, "srv +arg src dst deny\n");
  EXPECT_EQ(Tool({"-d", "file1"}).exit_code, 0);
  EXPECT_FALSE(harness::PathExists(PolicyFile("file1.policy")));
  EXPECT_EQ(Tool({"-r", "include/inc"}, "@anyvm @anyvm deny\n").exit_code, 0);
  EXPECT_EQ(Tool({"-l", "include"}).out, "inc\n");
  EXPECT_EQ(Tool({"-l", "--include"}).out, "inc\n");
  EXPECT_EQ(Tool({"-R", "include/inc"}).exit_code, 0);
  EXPECT_FALSE(harness::PathExists(PolicyFile("include/inc")));
}

TEST_F(QubesPolicyToolTest, ErrorsAndExitCodes) {
  auto missing = Tool({"--get", "unexistent"});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_TRUE(missing.err.starts_with("Not found: ")) << missing.err;
  auto bad_syntax = Tool({"-r", "x"}, "srv * src\n");
  EXPECT_EQ(bad_syntax.exit_code, 1);
  EXPECT_TRUE(bad_syntax.err.starts_with("Policy change validation failed")) << bad_syntax.err;
  EXPECT_EQ(Tool({"--list", "file"}).exit_code, 2);
  EXPECT_NE(Tool({"--list", "file"}).err.find("--list doesn't work with a file name"),
            std::string::npos);
  EXPECT_EQ(Tool({"-g"}).exit_code, 2);
  auto chars = Tool({"--get", "fi*le"});
  EXPECT_EQ(chars.exit_code, 2);
  EXPECT_NE(chars.err.find("invalid character"), std::string::npos);
  ASSERT_EQ(::rmdir((policy_dir() + "/include").c_str()), 0);
  ASSERT_EQ(::rmdir(policy_dir().c_str()), 0);
  auto broken = Tool({});
  EXPECT_EQ(broken.exit_code, 1);
  EXPECT_TRUE(broken.err.starts_with("Command failed")) << broken.err;
}

TEST_F(QubesPolicyToolTest, EditorCreatesAndReplacesWithTheFetchedToken) {
  harness::WriteScript(dir_ / "edit-good", "printf 'test.Svc * @anyvm @anyvm deny\\n' >> \"$2\"\n");
  harness::SpawnOptions options;
  options.argv = {harness::BinPath("qubes-policy-editor"), "30-user"};
  options.env = {{"QREXEC_SERVICE_PATH", dir_ / "rpc"}, {"EDITOR", dir_ / "edit-good"}};
  options.unset_env = {"VISUAL"};
  auto created = harness::RunProgram(options);
  EXPECT_EQ(created.exit_code, 0) << created.err;
  EXPECT_EQ(harness::ReadFile(PolicyFile("30-user.policy")), "test.Svc * @anyvm @anyvm deny\n");
  auto appended = harness::RunProgram(options);
  EXPECT_EQ(appended.exit_code, 0) << appended.err;
  EXPECT_EQ(harness::ReadFile(PolicyFile("30-user.policy")),
            "test.Svc * @anyvm @anyvm deny\ntest.Svc * @anyvm @anyvm deny\n");
  // A copy that does not lint is never sent; "q" quits without changes.
  harness::WriteScript(dir_ / "edit-bad", "printf 'test.Svc *\\n' > \"$2\"\n");
  options.env["EDITOR"] = dir_ / "edit-bad";
  auto quit = harness::RunProgram(options, "x\nq\n");
  EXPECT_EQ(quit.exit_code, 0) << quit.err;
  EXPECT_NE(quit.err.find("Linting failed"), std::string::npos) << quit.err;
  EXPECT_EQ(harness::ReadFile(PolicyFile("30-user.policy")),
            "test.Svc * @anyvm @anyvm deny\ntest.Svc * @anyvm @anyvm deny\n");
}

TEST_F(PolicyAdminTest, RestoreCopiesMissingFilesAndKeepsExistingOnes) {
  harness::WriteFile(dir_ / "saved/10-a.policy", "saved a\n");
  harness::WriteFile(dir_ / "saved/20-b.policy", "saved b\n");
  harness::WriteFile(dir_ / "saved/notes.txt", "not policy\n");
  harness::WriteFile(dir_ / "saved/include/inc", "saved inc\n");
  harness::WriteFile(PolicyFile("20-b.policy"), "live b\n");
  harness::SpawnOptions options;
  options.argv = {harness::BinPath("qrexec-policy-restore"), "--dest", policy_dir(), dir_ / "saved"};
  auto result = harness::RunProgram(options);
  EXPECT_EQ(result.exit_code, 0);
  EXPECT_EQ(result.err, "not overwriting " + PolicyFile("20-b.policy") + "\n");
  EXPECT_EQ(harness::ReadFile(PolicyFile("10-a.policy")), "saved a\n");
  EXPECT_EQ(harness::ReadFile(PolicyFile("20-b.policy")), "live b\n");
  EXPECT_EQ(harness::ReadFile(PolicyFile("include/inc")), "saved inc\n");
  EXPECT_FALSE(harness::PathExists(PolicyFile("notes.txt")));
  options.argv = {harness::BinPath("qrexec-policy-restore")};
  EXPECT_EQ(harness::RunProgram(options).exit_code, 2);
}

}  // namespace
}  // namespace qrexec::policy_tools
