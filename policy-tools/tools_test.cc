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
  harness::RunResult Graph(std::vector<std::string> extra) {
    std::vector<std::string> argv = {harness::BinPath("qrexec-policy-graph"), "--policy-dir",
                                     dir_ / "policy", "--system-info", dir_ / "system-info.json"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    return RunTool(argv);
  }
  harness::TempDir dir_;
};

TEST_F(PolicyGraph, DrawsAllowedCallsAsRedEdges) {
  auto result = Graph({});
  ASSERT_EQ(result.exit_code, 0) << result.err;
  const std::string& dot = result.out;
  EXPECT_TRUE(dot.starts_with("digraph g {\n")) << dot;
  EXPECT_TRUE(dot.ends_with("}\n"));
  EXPECT_NE(dot.find("  \"work\" -> \"personal\" [label = \"test.Copy\", color = red];\n"),
            std::string::npos)
      << dot;
  EXPECT_NE(dot.find("  \"work\" -> \"@dispvm\" [label = \"test.Open\", color = red];\n"),
            std::string::npos)
      << dot;
  EXPECT_NE(dot.find("  \"personal\" -> \"vault\" [label = \"test.Redirect\", color = red];\n"),
            std::string::npos)
      << dot;
  EXPECT_NE(dot.find("  \"work\" [color = \"#cc0000\", penwidth = 3];\n"), std::string::npos)
      << dot;
  EXPECT_NE(dot.find("  \"@dispvm\" [style = dotted];\n"), std::string::npos) << dot;
  EXPECT_EQ(dot.find("orange"), std::string::npos);
}

TEST_F(PolicyGraph, IncludeAskAndFiltersAndFullOutput) {
  auto asks = Graph({"--include-ask", "--source", "work"});
  ASSERT_EQ(asks.exit_code, 0) << asks.err;
  EXPECT_NE(asks.out.find("  \"work\" -> \"vault\" [label = \"test.Copy\", color = orange];\n"),
            std::string::npos)
      << asks.out;
  EXPECT_EQ(asks.out.find("\"personal\" ->"), std::string::npos);
  // Rules for any service only show up for the services asked for.
  EXPECT_EQ(asks.out.find("test.Extra"), std::string::npos);
  auto extra = Graph({"--service", "test.Extra", "other.Svc+x", "--target", "dom0"});
  EXPECT_NE(extra.out.find("  \"vault\" -> \"dom0\" [label = \"test.Extra\", color = red];\n"),
            std::string::npos)
      << extra.out;
  EXPECT_NE(extra.out.find("  \"vault\" -> \"dom0\" [label = \"other.Svc\", color = red];\n"),
            std::string::npos)
      << extra.out;
  auto full = Graph({"--full-output", "--target", "@dispvm", "--skip-labels"});
  ASSERT_EQ(full.exit_code, 0) << full.err;
  EXPECT_NE(full.out.find("  \"work\" -> \"@dispvm\" [color = red];\n"), std::string::npos)
      << full.out;
  auto labelled = Graph({"--full-output", "--target", "@dispvm"});
  EXPECT_NE(labelled.out.find("label = \"test.Open+url allow\""), std::string::npos)
      << labelled.out;
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
