// qubes-policy-lint, qrexec-policy-graph and the agent's prompt logic.
#include <gtest/gtest.h>

#include <string>

#include "agent_prompt.h"
#include "harness.h"
#include "test_util.h"

namespace qrexec::policy_tools::testing {
namespace {

harness::RunResult RunTool(std::vector<std::string> argv, std::string_view input = {}) {
  harness::SpawnOptions options;
  options.argv = std::move(argv);
  return harness::RunProgram(options, input);
}

TEST(PolicyLint, ACleanFileExitsZeroWithoutOutput) {
  harness::TempDir dir;
  harness::WriteFile(dir / "good.policy",
                     "# comment\n\n"
                     "qubes.Filecopy * @anyvm @anyvm ask default_target=@dispvm\n"
                     "!include include/other\n"
                     "!include-dir /anywhere/at/all\n"
                     "!include-service qubes.Gpg + include/gpg\n"
                     "* * @anyvm dom0 deny\n");
  auto result = RunTool({harness::BinPath("qubes-policy-lint"), dir / "good.policy"});
  EXPECT_EQ(result.exit_code, 0);
  EXPECT_EQ(result.out, "");
}

TEST(PolicyLint, EveryProblemIsReportedWithFileAndLine) {
  harness::TempDir dir;
  std::string path = dir / "bad.policy";
  harness::WriteFile(path,
                     "qubes.Filecopy * @anyvm @anyvm allow\n"
                     "qubes.Filecopy * @anyvm\n"
                     "qubes.Filecopy * @anyvm @anyvm permit\n"
                     "!include /etc/passwd\n"
                     "!bogus\n"
                     "qubes.Filecopy * @anyvm @default allow\n");
  auto result = RunTool({harness::BinPath("qubes-policy-lint"), path, dir / "never-read.policy"});
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_EQ(result.out,
            path + ":2: error: wrong number of fields\n" + path +
                ":3: error: invalid action: permit\n" + path +
                ":4: error: no such policy file: '/etc/passwd'\n" + path +
                ":5: error: invalid directive\n" + path +
                ":6: error: allow action for @default rule must specify target= option\n");
}

TEST(PolicyLint, ShowLineAppendsTheLine) {
  harness::TempDir dir;
  harness::WriteFile(dir / "bad.policy", "  x * @anyvm @anyvm nope  \n");
  auto result = RunTool({harness::BinPath("qubes-policy-lint"), "-s", dir / "bad.policy"});
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_EQ(result.out,
            dir / "bad.policy" + ":1: error: invalid action: nope: x * @anyvm @anyvm nope\n");
}

TEST(PolicyLint, IncludeServiceFilesUseTheOldFormat) {
  harness::TempDir dir;
  harness::WriteFile(dir / "svc", "$anyvm $anyvm allow,target=dom0\n$include:include/x\n");
  EXPECT_EQ(RunTool({harness::BinPath("qubes-policy-lint"), "-i", dir / "svc"}).exit_code, 0);
  // The same text is not a valid new-format file.
  EXPECT_EQ(RunTool({harness::BinPath("qubes-policy-lint"), dir / "svc"}).exit_code, 1);
  auto from_stdin = RunTool({harness::BinPath("qubes-policy-lint"), "-i", "-"}, "@anyvm\n");
  EXPECT_EQ(from_stdin.exit_code, 1);
  EXPECT_EQ(from_stdin.out, "<stdin>:1: error: wrong number of fields\n");
}

class PolicyGraph : public ::testing::Test {
 protected:
  void SetUp() override {
    harness::WriteFile(dir_ / "system-info.json", SmallSystemInfoJson());
    harness::WriteFile(dir_ / "policy/30-test.policy",
                       "test.Copy * work personal allow\n"
                       "test.Copy * work @anyvm ask\n"
                       "test.Open +url work @dispvm allow\n"
                       "test.Redirect * personal @default allow target=vault\n"
                       "* * vault dom0 allow\n");
  }
  void UsePolicy(const std::string& text) {
    harness::WriteFile(dir_ / "policy/30-test.policy", text);
  }
  harness::RunResult Graph(std::vector<std::string> extra) {
    std::vector<std::string> argv = {harness::BinPath("qrexec-policy-graph"), "--policy-dir",
                                     dir_ / "policy", "--system-info", dir_ / "system-info.json"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    return RunTool(argv);
  }
  harness::TempDir dir_;
};

// Node and edge lines as the reference spells them. Sources are walked in
// domain-name order (vault before work).
std::string Node(const std::string& name) {
  if (name.starts_with("@")) return "  \"" + name + "\" [style = dotted];\n";
  return "  \"" + name + "\" [color = \"#cc0000\", penwidth = 3];\n";
}
std::string Edge(const std::string& from, const std::string& to, const std::string& label,
                 const std::string& color = "red") {
  return "  \"" + from + "\" -> \"" + to + "\" [label=\"" + label + "\" color=" + color + "];\n";
}

TEST_F(PolicyGraph, DrawsEachAllowedCallAfterItsTwoNodes) {
  UsePolicy("test.Svc * work personal allow\ntest.Svc * personal work ask\n");
  auto result = Graph({});
  ASSERT_EQ(result.exit_code, 0) << result.err;
  EXPECT_EQ(result.out, "digraph g {\n" + Node("work") + Node("personal") +
                            Edge("work", "personal", "test.Svc") + "}\n");
}

TEST_F(PolicyGraph, AsksAreOrangeAndOnlyDrawnWhenAskedFor) {
  UsePolicy("test.Svc * work personal ask\n");
  EXPECT_EQ(Graph({}).out, "digraph g {\n}\n");
  auto result = Graph({"--include-ask"});
  EXPECT_EQ(result.out, "digraph g {\n" + Node("work") + Node("personal") +
                            Edge("work", "personal", "test.Svc", "orange") + "}\n");
}

TEST_F(PolicyGraph, ServiceFilterKeepsOnlyThatService) {
  UsePolicy(
      "test.Svc * work personal allow\n"
      "test.Other * vault personal allow\n"
      "test.Svc * vault personal allow\n");
  auto result = Graph({"--service", "test.Svc"});
  ASSERT_EQ(result.exit_code, 0) << result.err;
  EXPECT_EQ(result.out, "digraph g {\n" + Node("vault") + Node("personal") +
                            Edge("vault", "personal", "test.Svc") + Node("work") +
                            Edge("work", "personal", "test.Svc") + "}\n");
}

TEST_F(PolicyGraph, ServiceWithArgumentAlsoReachesWildcardRules) {
  UsePolicy(
      "test.Svc * work personal allow\n"
      "test.Other * vault personal allow\n"
      "test.Svc +arg vault personal allow\n");
  auto result = Graph({"--service", "test.Svc+arg"});
  EXPECT_EQ(result.out, "digraph g {\n" + Node("vault") + Node("personal") +
                            Edge("vault", "personal", "test.Svc") + Node("work") +
                            Edge("work", "personal", "test.Svc") + "}\n");
  // A service only named on the command line is evaluated too.
  UsePolicy("test.Svc * work personal allow\n");
  EXPECT_EQ(Graph({"--service", "test.Svc+new"}).out,
            "digraph g {\n" + Node("work") + Node("personal") +
                Edge("work", "personal", "test.Svc") + "}\n");
}

TEST_F(PolicyGraph, FullOutputLabelsCarryTheRulesArgumentAndAction) {
  UsePolicy(
      "test.Svc +one work personal allow\n"
      "test.Svc +two work personal allow\n"
      "test.Other +one vault personal allow\n");
  auto result = Graph({"--full-output", "--service", "test.Svc"});
  EXPECT_EQ(result.out, "digraph g {\n" + Node("work") + Node("personal") +
                            Edge("work", "personal", "test.Svc+one allow") +
                            Edge("work", "personal", "test.Svc+two allow") + "}\n");
  UsePolicy("test.Svc * work personal ask default_target=personal\n");
  EXPECT_EQ(Graph({"--full-output", "--skip-labels"}).out,
            "digraph g {\n" + Node("work") + Node("personal") +
                Edge("work", "personal", " ask default_target=personal", "orange") + "}\n");
}

TEST_F(PolicyGraph, TargetFilterLooksAtWhereTheCallLands) {
  UsePolicy("test.Svc * work personal allow target=vault\ntest.Svc * work vault allow\n");
  auto result = Graph({"--target", "vault"});
  EXPECT_EQ(result.out, "digraph g {\n" + Node("work") + Node("vault") +
                            Edge("work", "vault", "test.Svc") + "}\n");
  EXPECT_EQ(Graph({"--target", "personal"}).out, "digraph g {\n}\n");
}

TEST_F(PolicyGraph, SkipLabelsKeepsAnEmptyLabelAndMergesServices) {
  UsePolicy("test.A * work personal allow\ntest.B * work personal allow\n");
  EXPECT_EQ(Graph({"--skip-labels"}).out,
            "digraph g {\n" + Node("work") + Node("personal") + Edge("work", "personal", "") +
                "}\n");
}

TEST_F(PolicyGraph, RulesForAnyServiceShowOnlyForNamedServices) {
  // `* * vault dom0 allow` is drawn for the services other rules name...
  EXPECT_NE(Graph({}).out.find(Edge("vault", "dom0", "test.Copy")), std::string::npos);
  EXPECT_EQ(Graph({}).out.find("test.Extra"), std::string::npos);
  // ...and for one named only on the command line.
  auto result = Graph({"--service", "test.Extra", "--target", "dom0"});
  EXPECT_NE(result.out.find(Edge("vault", "dom0", "test.Extra")), std::string::npos)
      << result.out;
}

TEST_F(PolicyGraph, RefusesSourcesAndTargetsThatCannotBeCalls) {
  auto bad_source = Graph({"--source", "@dispvm"});
  EXPECT_EQ(bad_source.exit_code, 2);
  EXPECT_NE(bad_source.err.find("--source @dispvm is not a valid call source"),
            std::string::npos)
      << bad_source.err;
  auto bad_target = Graph({"--target", "@anyvm"});
  EXPECT_EQ(bad_target.exit_code, 2);
  EXPECT_NE(bad_target.err.find("--target @anyvm is not a valid actual call target"),
            std::string::npos)
      << bad_target.err;
}

TEST_F(PolicyGraph, WritesPngWhenGraphvizIsInstalled) {
  if (!harness::PathExists("/usr/bin/dot")) GTEST_SKIP() << "needs graphviz: dot";
  auto result = Graph({"--output", dir_ / "g.png"});
  ASSERT_EQ(result.exit_code, 0) << result.err;
  EXPECT_TRUE(harness::ReadFile(dir_ / "g.png").starts_with("\x89PNG"));
}

TEST(AgentPrompt, DecodesTheHeaderAndInterpretsAnswers) {
  using namespace std::string_literals;
  auto request = DecodeAgentRequest("policy.Ask dom0 name dom0\0{}"s);
  ASSERT_TRUE(request);
  EXPECT_EQ(request->service, "policy.Ask");
  EXPECT_EQ(request->caller, "dom0");
  EXPECT_FALSE(DecodeAgentRequest("no nul"));
  auto ask = DecodeAsk(R"({"source": "work", "service": "s", "argument": "+", "default_target": "b",
                           "targets": ["b", "@dispvm:a", "c"], "icons": {}})");
  ASSERT_TRUE(ask);
  EXPECT_EQ(PromptOrder(*ask), (std::vector<std::string>{"@dispvm:a", "b", "c"}));
  EXPECT_NE(FormatPrompt(*ask).find("1) Disposable VM (a)"), std::string::npos);
  EXPECT_EQ(InterpretAnswer(*ask, ""), "allow:b");
  EXPECT_EQ(InterpretAnswer(*ask, "1\n"), "allow:@dispvm:a");
  EXPECT_EQ(InterpretAnswer(*ask, " c "), "allow:c");
  EXPECT_EQ(InterpretAnswer(*ask, "n"), "deny");
  EXPECT_EQ(InterpretAnswer(*ask, "4"), std::nullopt);
  EXPECT_EQ(InterpretAnswer(*ask, "zzz"), std::nullopt);
  EXPECT_FALSE(DecodeAsk(R"({"source": "work", "targets": []})"));
  EXPECT_FALSE(DecodeAsk("not json"));
}

}  // namespace
}  // namespace qrexec::policy_tools::testing
