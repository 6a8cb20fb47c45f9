// qrexec-legacy-convert, black-box: the real binary on temporary policy and
// legacy directories, with system info from a fake qubesd. The cases follow
// the reference tool's behaviour (which rules move where, .bak/.rpmsave, the
// graph check and its restore question).
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <string>

#include "harness.h"
#include "test_util.h"

namespace qrexec::policy_tools::testing {
namespace {

// The config tools' marker header that 50-config-* files start with.
const std::string kToolHeader =
    "\n# THIS IS AN AUTOMATICALLY GENERATED POLICY FILE.\n"
    "# Any changes made manually may be overwritten by Qubes Configuration Tools.\n";

class LegacyConvert : public ::testing::Test {
 protected:
  void SetUp() override {
    qubesd_.SetJson(SmallSystemInfoJson());
    harness::WriteFile(policy_ + "/" + "35-compat.policy", "!compat-4.0\n");
    harness::WriteFile(legacy_ + "/" + ".keep", "");  // makes the directory
  }
  harness::RunResult Convert(std::string_view answer = "", std::vector<std::string> args = {}) {
    harness::SpawnOptions options;
    options.argv = {harness::BinPath("qrexec-legacy-convert")};
    options.argv.insert(options.argv.end(), args.begin(), args.end());
    options.env = {{"QREXEC_POLICY_DIR", policy_},
                   {"QREXEC_LEGACY_POLICY_DIR", legacy_},
                   {"QREXEC_QUBESD_SOCKET", dir_ / "qubesd.sock"}};
    return harness::RunProgram(options, answer);
  }
  void Legacy(const std::string& name, const std::string& text) {
    harness::WriteFile(legacy_ + "/" + name, text);
  }
  std::string Policy(const std::string& name) { return harness::ReadFile(policy_ + "/" + name); }
  bool InPolicy(const std::string& name) { return harness::PathExists(policy_ + "/" + name); }
  bool InLegacy(const std::string& name) { return harness::PathExists(legacy_ + "/" + name); }

  harness::TempDir dir_;
  std::string policy_ = dir_ / "policy.d";
  std::string legacy_ = dir_ / "legacy";
  FakeQubesd qubesd_{dir_ / "qubesd.sock"};
};

TEST_F(LegacyConvert, MovesConfigToolRulesAndRenamesTheOldFile) {
  Legacy("qubes.Filecopy", "\ndom0 @anyvm ask\nwork @anyvm ask\npersonal @anyvm deny");
  auto result = Convert();
  ASSERT_EQ(result.exit_code, 0) << result.out << result.err;
  EXPECT_EQ(Policy("50-config-filecopy.policy"), kToolHeader +
                                                     "qubes.Filecopy\t*\tdom0\t@anyvm\task\n"
                                                     "qubes.Filecopy\t*\twork\t@anyvm\task\n"
                                                     "qubes.Filecopy\t*\tpersonal\t@anyvm\tdeny\n");
  EXPECT_FALSE(InLegacy("qubes.Filecopy"));
  EXPECT_TRUE(InLegacy("qubes.Filecopy.rpmsave"));
  EXPECT_TRUE(InLegacy(".keep.rpmsave"));  // every regular file, as the reference does
  EXPECT_FALSE(InPolicy("30-user.policy"));
  EXPECT_EQ(result.out,
            "Initiating policy conversion process...\n"
            "Converting old policy files into new format files....\n"
            "Writing " +
                policy_ +
                "/50-config-filecopy.policy...\n"
                "Successfully converted old policy to new format.\n");
}

TEST_F(LegacyConvert, OldSyntaxIsRewrittenAndComplexRulesGoTo30User) {
  Legacy("test.Svc",
         "$anyvm $dispvm allow,target=$dispvm:default-dvm\n"
         "$tag:work-tag $anyvm ask,default_target=personal,user=alice\n"
         "work vault allow,autostart=no,notify=yes\n"
         "personal vault deny,notify=no\n");
  Legacy("qubes.ClipboardPaste", "work @anyvm allow target=personal\npersonal @anyvm ask\n");
  auto result = Convert();
  ASSERT_EQ(result.exit_code, 0) << result.out << result.err;
  std::string user = Policy("30-user.policy");
  EXPECT_TRUE(user.starts_with("\n# ")) << user;
  // Services in legacy-file order; notify= and autostart= are kept.
  EXPECT_TRUE(
      user.ends_with("\nqubes.ClipboardPaste\t*\twork\t@anyvm\tallow target=personal\n"
                     "test.Svc\t*\t@anyvm\t@dispvm\tallow target=@dispvm:default-dvm\n"
                     "test.Svc\t*\t@tag:work-tag\t@anyvm\task default_target=personal user=alice\n"
                     "test.Svc\t*\twork\tvault\tallow notify=yes autostart=no\n"
                     "test.Svc\t*\tpersonal\tvault\tdeny notify=no\n"))
      << user;
  EXPECT_EQ(Policy("50-config-clipboard.policy"),
            kToolHeader + "qubes.ClipboardPaste\t*\tpersonal\t@anyvm\task\n");
}

TEST_F(LegacyConvert, StopsAtTheFirstPlainAnyvmDeny) {
  Legacy("qubes.ClipboardPaste", "work @anyvm ask\n$anyvm $anyvm deny\npersonal @anyvm ask\n");
  // With an argument the same line is not the end.
  Legacy("test.Svc+arg", "@anyvm @anyvm deny\nwork personal allow\n");
  auto result = Convert();
  ASSERT_EQ(result.exit_code, 0) << result.out << result.err;
  EXPECT_EQ(Policy("50-config-clipboard.policy"),
            kToolHeader + "qubes.ClipboardPaste\t*\twork\t@anyvm\task\n");
  std::string user = Policy("30-user.policy");
  EXPECT_TRUE(
      user.ends_with("\ntest.Svc\t+arg\t@anyvm\t@anyvm\tdeny\n"
                     "test.Svc\t+arg\twork\tpersonal\tallow\n"))
      << user;
}

TEST_F(LegacyConvert, RulesTheNewPolicyHasAreNotCopiedAndExistingFilesAreBackedUp) {
  std::string old_text = kToolHeader + "\nqubes.Filecopy * @anyvm @anyvm ask\n";
  harness::WriteFile(policy_ + "/" + "50-config-filecopy.policy", old_text);
  harness::WriteFile(policy_ + "/" + "50-config-filecopy.policy.bak", "taken\n");
  Legacy("qubes.Filecopy", "work @anyvm deny\npersonal work allow\n@anyvm @anyvm ask\n");
  Legacy("qubes.Filecopy.rpmsave", "an earlier conversion\n");
  auto result = Convert();
  ASSERT_EQ(result.exit_code, 0) << result.out << result.err;
  EXPECT_EQ(Policy("50-config-filecopy.policy"), kToolHeader +
                                                     "qubes.Filecopy\t*\twork\t@anyvm\tdeny\n"
                                                     "qubes.Filecopy\t*\tpersonal\twork\tallow\n"
                                                     "qubes.Filecopy * @anyvm @anyvm ask\n");
  EXPECT_EQ(Policy("50-config-filecopy.policy.bak"), "taken\n");
  EXPECT_EQ(Policy("50-config-filecopy.policy.bak.bak"), old_text);
  EXPECT_FALSE(InPolicy("30-user.policy"));
  EXPECT_EQ(harness::ReadFile(legacy_ + "/" + "qubes.Filecopy.rpmsave"), "an earlier conversion\n");
  EXPECT_EQ(harness::ReadFile(legacy_ + "/" + "qubes.Filecopy.rpmsave.rpmsave"),
            "work @anyvm deny\npersonal work allow\n@anyvm @anyvm ask\n");
}

TEST_F(LegacyConvert, InputFileKeepsTheFirstRulePerSourceAndService) {
  Legacy("qubes.InputKeyboard", "work dom0 ask\npersonal dom0 deny\n");
  Legacy("qubes.InputMouse",
         "work @adminvm allow\npersonal @anyvm deny\npersonal @adminvm allow\n");
  Legacy("qubes.InputTablet", "work dom0 ask\nwork dom0 deny\n");
  auto result = Convert();
  ASSERT_EQ(result.exit_code, 0) << result.out << result.err;
  EXPECT_EQ(Policy("50-config-input.policy"), kToolHeader +
                                                  "qubes.InputKeyboard\t*\twork\tdom0\task\n"
                                                  "qubes.InputKeyboard\t*\tpersonal\tdom0\tdeny\n"
                                                  "qubes.InputMouse\t*\twork\t@adminvm\tallow\n"
                                                  "qubes.InputMouse\t*\tpersonal\t@adminvm\tallow\n"
                                                  "qubes.InputTablet\t*\twork\tdom0\task\n");
  std::string user = Policy("30-user.policy");
  EXPECT_TRUE(user.ends_with("\nqubes.InputMouse\t*\tpersonal\t@anyvm\tdeny\n")) << user;
}

TEST_F(LegacyConvert, ToolSpecificChecksDecideBetweenConfigFileAnd30User) {
  Legacy("qubes.OpenInVM",
         "personal @dispvm allow target=@dispvm:default-dvm\n"
         "work @dispvm ask default_target=@dispvm:default-dvm\n"
         "work personal deny\n");
  Legacy("u2f.Authenticate+123", "work personal allow\n");
  Legacy("u2f.Register", "work personal allow\nvault @anyvm deny\n");
  Legacy("policy.RegisterArgument+u2f.Authenticate", "work personal allow\n");
  auto result = Convert();
  ASSERT_EQ(result.exit_code, 0) << result.out << result.err;
  // Services come in legacy-file order (sorted names: policy.* before u2f.*).
  EXPECT_EQ(Policy("50-config-openinvm.policy"),
            kToolHeader +
                "qubes.OpenInVM\t*\tpersonal\t@dispvm\tallow target=@dispvm:default-dvm\n"
                "qubes.OpenInVM\t*\twork\t@dispvm\task default_target=@dispvm:default-dvm\n");
  EXPECT_EQ(Policy("50-config-u2f.policy"),
            kToolHeader +
                "policy.RegisterArgument\t+u2f.Authenticate\twork\tpersonal\tallow\n"
                "u2f.Register\t*\twork\tpersonal\tallow\n");
  std::string user = Policy("30-user.policy");
  EXPECT_TRUE(
      user.ends_with("\nqubes.OpenInVM\t*\twork\tpersonal\tdeny\n"
                     "u2f.Authenticate\t+123\twork\tpersonal\tallow\n"
                     "u2f.Register\t*\tvault\t@anyvm\tdeny\n"))
      << user;
  // Writes come in the reference's file order.
  EXPECT_LT(result.out.find("30-user"), result.out.find("50-config-openinvm"));
  EXPECT_LT(result.out.find("50-config-openinvm"), result.out.find("50-config-u2f"));
}

TEST_F(LegacyConvert, UpdatesAndOpenUrlRulesFollowTheirToolsLimits) {
  // Updates: keyword sources only @type:TemplateVM / @tag:whonix-updatevm,
  // allow only. OpenURL: target @dispvm, landing in a disposable.
  Legacy("qubes.UpdatesProxy",
         "$type:TemplateVM $default allow,target=sys-net\n"
         "$tag:whonix-updatevm $default allow,target=personal\n"
         "$tag:other $default allow,target=work\n"
         "work @default ask\n"
         "$anyvm $anyvm deny\n");
  Legacy("qubes.OpenURL",
         "work @dispvm allow\n"
         "personal @dispvm deny\n"
         "vault @dispvm ask default_target=@dispvm\n"
         "work @anyvm deny\n");
  auto result = Convert("n\n");
  ASSERT_EQ(result.exit_code, 0) << result.out << result.err;
  EXPECT_EQ(Policy("50-config-updates.policy"),
            kToolHeader +
                "qubes.UpdatesProxy\t*\t@type:TemplateVM\t@default\tallow target=sys-net\n"
                "qubes.UpdatesProxy\t*\t@tag:whonix-updatevm\t@default\tallow target=personal\n");
  EXPECT_EQ(Policy("50-config-openurl.policy"),
            kToolHeader +
                "qubes.OpenURL\t*\tpersonal\t@dispvm\tdeny\n"
                "qubes.OpenURL\t*\tvault\t@dispvm\task default_target=@dispvm\n");
  std::string user = Policy("30-user.policy");
  EXPECT_TRUE(
      user.ends_with("\nqubes.OpenURL\t*\twork\t@dispvm\tallow\n"
                     "qubes.OpenURL\t*\twork\t@anyvm\tdeny\n"
                     "qubes.UpdatesProxy\t*\t@tag:other\t@default\tallow target=work\n"
                     "qubes.UpdatesProxy\t*\twork\t@default\task\n"))
      << user;
}

// A later file asks where the legacy file allowed: once the rule moves to
// 50-config-filecopy, behind 40-ask, the policy changes.
class LegacyConvertChange : public LegacyConvert {
 protected:
  void SetUp() override {
    LegacyConvert::SetUp();
    harness::WriteFile(policy_ + "/" + "40-ask.policy", "qubes.Filecopy * work personal ask\n");
    harness::WriteFile(policy_ + "/" + "50-config-clipboard.policy", existing_);
    Legacy("qubes.Filecopy", "work personal allow\n");
    Legacy("qubes.ClipboardPaste", "work personal ask\n");
  }
  void ExpectRestored() {
    EXPECT_FALSE(InPolicy("50-config-filecopy.policy"));
    EXPECT_EQ(Policy("50-config-clipboard.policy"), existing_);
    EXPECT_FALSE(InPolicy("50-config-clipboard.policy.bak"));
    EXPECT_EQ(harness::ReadFile(legacy_ + "/" + "qubes.Filecopy"), "work personal allow\n");
    EXPECT_EQ(harness::ReadFile(legacy_ + "/" + "qubes.ClipboardPaste"), "work personal ask\n");
    EXPECT_FALSE(InLegacy("qubes.Filecopy.rpmsave"));
    EXPECT_FALSE(InLegacy(".keep.rpmsave"));
  }
  std::string existing_ = "qubes.ClipboardPaste * vault work deny\n";
};

TEST_F(LegacyConvertChange, PrintsTheDifferenceAndRestoresOnYes) {
  auto result = Convert("y\n");
  EXPECT_EQ(result.exit_code, 1) << result.out << result.err;
  std::string edge_allow = "\"work\" -> \"personal\" [label=\"qubes.Filecopy allow\" color=red];";
  std::string edge_ask = "\"work\" -> \"personal\" [label=\"qubes.Filecopy ask\" color=orange];";
  size_t old_state = result.out.find("\nOLD STATE\n");
  size_t new_state = result.out.find("\nNEW STATE\n");
  ASSERT_NE(old_state, std::string::npos) << result.out;
  ASSERT_NE(new_state, std::string::npos) << result.out;
  EXPECT_NE(result.out.find("ERROR: Found the following differences between previous and "
                            "converted policy states:\nOLD STATE\n"),
            std::string::npos);
  size_t allow_at = result.out.find(edge_allow), ask_at = result.out.find(edge_ask);
  EXPECT_TRUE(allow_at > old_state && allow_at < new_state) << result.out;
  EXPECT_TRUE(ask_at != std::string::npos && ask_at > new_state) << result.out;
  EXPECT_TRUE(
      result.out.ends_with("Do you want to restore initial state? [Y/n] Conversion reverted.\n"))
      << result.out;
  ExpectRestored();
}

TEST_F(LegacyConvertChange, EndOfInputCountsAsYes) {
  auto result = Convert("");
  EXPECT_EQ(result.exit_code, 1) << result.out << result.err;
  EXPECT_TRUE(result.out.ends_with("Conversion reverted.\n")) << result.out;
  ExpectRestored();
}

TEST_F(LegacyConvertChange, KeepsTheConversionOnNo) {
  auto result = Convert("n\n");
  EXPECT_EQ(result.exit_code, 0) << result.out << result.err;
  EXPECT_TRUE(result.out.ends_with("[Y/n] Successfully converted old policy to new format.\n"))
      << result.out;
  EXPECT_EQ(Policy("50-config-filecopy.policy"),
            kToolHeader + "qubes.Filecopy\t*\twork\tpersonal\tallow\n");
  EXPECT_EQ(Policy("50-config-clipboard.policy.bak"), existing_);
  EXPECT_TRUE(InLegacy("qubes.Filecopy.rpmsave"));
  EXPECT_FALSE(InLegacy("qubes.Filecopy"));
}

// The implicit denies after a SERVICE+ARG file are not moved (as in the
// reference), so other callers of u2f.Authenticate+123 now reach the
// u2f.Authenticate rules. The graph cannot show it (its label names the
// rule's argument); the call outcomes do, and the user is asked.
TEST_F(LegacyConvert, ACallThatNowFallsThroughToTheServiceRulesIsAChange) {
  Legacy("u2f.Authenticate+123", "work personal allow\n");
  Legacy("u2f.Authenticate", "$anyvm personal ask\n");
  auto result = Convert("Y\n");
  EXPECT_EQ(result.exit_code, 1) << result.out << result.err;
  size_t new_state = result.out.find("\nNEW STATE\n");
  size_t call = result.out.find(
      "\n  call u2f.Authenticate+123 vault -> personal: ask targets=personal user=DEFAULT\n");
  ASSERT_NE(new_state, std::string::npos) << result.out;
  EXPECT_TRUE(call != std::string::npos && call > new_state) << result.out;
  EXPECT_TRUE(result.out.ends_with("Conversion reverted.\n")) << result.out;
  EXPECT_TRUE(InLegacy("u2f.Authenticate+123"));
  EXPECT_FALSE(InPolicy("30-user.policy"));
  EXPECT_FALSE(InPolicy("50-config-u2f.policy"));
}

TEST_F(LegacyConvert, ABrokenPolicyChangesNothing) {
  harness::WriteFile(policy_ + "/" + "20-bad.policy", "qubes.Filecopy * work\n");
  Legacy("qubes.Filecopy", "work @anyvm ask\n");
  auto result = Convert();
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_NE(result.err.find("20-bad.policy:1: wrong number of fields"), std::string::npos)
      << result.err;
  EXPECT_TRUE(InLegacy("qubes.Filecopy"));
  EXPECT_FALSE(InPolicy("50-config-filecopy.policy"));
}

TEST_F(LegacyConvert, AWrittenFileKeepsItsMode) {
  harness::WriteFile(policy_ + "/50-config-filecopy.policy", "qubes.Filecopy * vault work deny\n",
                     0600);
  Legacy("qubes.Filecopy", "work personal ask\n");
  auto result = Convert();
  ASSERT_EQ(result.exit_code, 0) << result.out << result.err;
  struct stat st {};
  ASSERT_EQ(::stat((policy_ + "/50-config-filecopy.policy").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  EXPECT_EQ(Policy("50-config-filecopy.policy"), kToolHeader +
                                                     "qubes.Filecopy\t*\twork\tpersonal\task\n"
                                                     "qubes.Filecopy * vault work deny\n");
}

TEST_F(LegacyConvert, WithoutCompatOrLegacyDirectoryThereIsNothingToDo) {
  std::filesystem::remove(policy_ + "/35-compat.policy");
  std::filesystem::remove_all(legacy_);
  harness::WriteFile(policy_ + "/90-default.policy", "qubes.Filecopy * @anyvm @anyvm ask\n");
  auto result = Convert();
  EXPECT_EQ(result.exit_code, 0) << result.out << result.err;
  EXPECT_TRUE(result.out.ends_with("Successfully converted old policy to new format.\n"));
  EXPECT_FALSE(InPolicy("30-user.policy"));
}

TEST_F(LegacyConvert, AFileThatCannotBeWrittenUndoesWhatWasDone) {
  harness::WriteFile(policy_ + "/30-user.policy", "test.Other * work vault deny\n");
  // A directory where the temporary file for 50-config-filecopy must go.
  std::filesystem::create_directories(policy_ + "/.50-config-filecopy.policy.tmp");
  Legacy("test.Svc", "work personal allow\n");
  Legacy("qubes.Filecopy", "work personal ask\n");
  auto result = Convert();
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_NE(result.err.find("cannot write " + policy_ + "/50-config-filecopy.policy"),
            std::string::npos)
      << result.err;
  EXPECT_NE(result.err.find("nothing was converted"), std::string::npos) << result.err;
  EXPECT_EQ(Policy("30-user.policy"), "test.Other * work vault deny\n");
  EXPECT_FALSE(InPolicy("30-user.policy.bak"));
  EXPECT_FALSE(InPolicy("50-config-filecopy.policy"));
  EXPECT_TRUE(InLegacy("test.Svc"));
  EXPECT_TRUE(InLegacy("qubes.Filecopy"));
  EXPECT_FALSE(InLegacy("test.Svc.rpmsave"));
}

TEST_F(LegacyConvert, TakesOnlyHelp) {
  auto help = Convert("", {"--help"});
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_TRUE(help.out.starts_with("usage: qrexec-legacy-convert [-h]\n")) << help.out;
  EXPECT_EQ(Convert("", {"-h"}).exit_code, 0);
  auto bad = Convert("", {"--policy-dir", "/tmp"});
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_EQ(bad.err,
            "usage: qrexec-legacy-convert [-h]\n"
            "qrexec-legacy-convert: error: unrecognized arguments: --policy-dir /tmp\n");
  Legacy("qubes.Filecopy", "work @anyvm ask\n");
  Convert("", {"extra"});
  EXPECT_TRUE(InLegacy("qubes.Filecopy"));  // a usage error converts nothing
}

}  // namespace
}  // namespace qrexec::policy_tools::testing
