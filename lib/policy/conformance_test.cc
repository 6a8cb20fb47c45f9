// Every case of ../shared/conformance/policy-cases.json through the real
// qrexec-policy-exec binary (--explain, and the plain answer mode).
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "policy/test_util.h"

extern char** environ;

namespace qrexec::policy {
namespace {

using nlohmann::json;
using testing::SharedConformanceDir;
using testing::TempDir;

std::string CasesPath() { return SharedConformanceDir() + "/policy-cases.json"; }

std::vector<json> LoadCases() {
  std::ifstream in(CasesPath());
  if (!in) return {};
  json all = json::parse(in, nullptr, false);
  if (!all.is_array()) return {};
  return std::vector<json>(all.begin(), all.end());
}

struct RunResult {
  int status = -1;
  std::string out;
};

RunResult RunTool(const std::vector<std::string>& args) {
  int fds[2];
  RunResult r;
  if (::pipe(fds) != 0) return r;
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, fds[1], 1);
  posix_spawn_file_actions_addclose(&actions, fds[0]);
  std::vector<char*> argv;
  for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  pid_t pid;
  int rc = posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  ::close(fds[1]);
  if (rc == 0) {
    char buf[4096];
    ssize_t n;
    while ((n = ::read(fds[0], buf, sizeof buf)) > 0) r.out.append(buf, static_cast<size_t>(n));
    int st = 0;
    ::waitpid(pid, &st, 0);
    r.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128;
  }
  ::close(fds[0]);
  return r;
}

std::string SafeName(const std::string& id) {
  std::string out;
  for (char c : id) out += std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
  return out;
}

class Conformance : public ::testing::TestWithParam<json> {};

// Writes the case's files and returns the arguments (without --explain).
std::vector<std::string> Prepare(const json& c, const TempDir& dir, std::string* policy_dir,
                                 std::string* legacy_dir) {
  *policy_dir = dir.Mkdir("policy");
  for (auto it = c["policy_files"].begin(); it != c["policy_files"].end(); ++it)
    dir.Write("policy/" + it.key(), it.value().get<std::string>());
  std::vector<std::string> args = {std::string(QREXEC_BIN_DIR) + "/qrexec-policy-exec", "--path",
                                   *policy_dir, "--system-info",
                                   SharedConformanceDir() + "/system-info.json"};
  *legacy_dir = dir.Mkdir("legacy");
  if (c.contains("legacy_files") && c["legacy_files"].is_object()) {
    for (auto it = c["legacy_files"].begin(); it != c["legacy_files"].end(); ++it)
      dir.Write("legacy/" + it.key(), it.value().get<std::string>());
  }
  args.insert(args.end(), {"--legacy-path", *legacy_dir});
  if (c.contains("requested_source") && c["requested_source"].is_string())
    args.insert(args.end(), {"--requested-source", c["requested_source"].get<std::string>()});
  return args;
}

std::vector<std::string> RequestArgs(const json& c) {
  return {"--", c["source"].get<std::string>(), c["target"].get<std::string>(),
          c["service"].get<std::string>() + c["argument"].get<std::string>()};
}

TEST_P(Conformance, ExplainOutputMatchesTheReference) {
  const json& c = GetParam();
  TempDir dir;
  std::string policy_dir, legacy_dir;
  std::vector<std::string> args = Prepare(c, dir, &policy_dir, &legacy_dir);
  args.push_back("--explain");
  for (const std::string& a : RequestArgs(c)) args.push_back(a);
  RunResult r = RunTool(args);
  json got = json::parse(r.out, nullptr, false);
  ASSERT_TRUE(got.is_object()) << "output: " << r.out;
  const json& exp = c["expected"];
  // Key order as in the reference output.
  std::vector<std::string> keys;
  for (auto it = got.begin(); it != got.end(); ++it) keys.push_back(it.key());
  EXPECT_EQ(r.out.rfind("{\"result\": ", 0), 0u) << r.out;
  EXPECT_EQ(got.size(), 7u);
  for (const char* k : {"result", "targets", "default_target", "notify", "answer"})
    EXPECT_EQ(got[k], exp[k]) << "key " << k << " of case " << c["id"];
  if (exp["rule"].is_null()) {
    EXPECT_TRUE(got["rule"].is_null()) << got["rule"];
  } else {
    std::string want = exp["rule"].get<std::string>();
    if (want.rfind("@legacy/", 0) == 0)
      want = legacy_dir + "/" + want.substr(8);
    else
      want = policy_dir + "/" + want;
    EXPECT_EQ(got["rule"], want);
  }
  if (exp["reason"].is_null()) {
    EXPECT_TRUE(got["reason"].is_null()) << got["reason"];
  } else {
    ASSERT_TRUE(got["reason"].is_string());
    EXPECT_FALSE(got["reason"].get<std::string>().empty());
  }
  EXPECT_EQ(r.status, exp["result"] == "allow" ? 0 : 1);
}

TEST_P(Conformance, PlainModePrintsTheAnswerAndExitsByResult) {
  const json& c = GetParam();
  TempDir dir;
  std::string policy_dir, legacy_dir;
  std::vector<std::string> args = Prepare(c, dir, &policy_dir, &legacy_dir);
  for (const std::string& a : RequestArgs(c)) args.push_back(a);
  RunResult r = RunTool(args);
  const json& exp = c["expected"];
  if (exp["result"] == "ask") {
    // No guivm in the fixture: the ask is refused ("denied by the user").
    EXPECT_EQ(r.out, "result=deny\n");
    EXPECT_EQ(r.status, 1);
  } else {
    EXPECT_EQ(r.out, exp["answer"].get<std::string>() + "\n");
    EXPECT_EQ(r.status, exp["result"] == "allow" ? 0 : 1);
  }
}

INSTANTIATE_TEST_SUITE_P(Cases, Conformance, ::testing::ValuesIn(LoadCases()),
                         [](const ::testing::TestParamInfo<json>& param_info) {
                           return "case_" + SafeName(param_info.param["id"].get<std::string>());
                         });

TEST(ConformanceData, TheSharedCasesArePresent) {
  std::vector<json> cases = LoadCases();
  ASSERT_FALSE(cases.empty()) << "missing or unreadable " << CasesPath()
                              << " (the shared folder must sit beside the checkout)";
  EXPECT_GE(cases.size(), 19u);
}

TEST(PolicyExec, WrongArgumentCountIsAUsageError) {
  RunResult r = RunTool({std::string(QREXEC_BIN_DIR) + "/qrexec-policy-exec", "a", "b"});
  EXPECT_EQ(r.status, 2);
  r = RunTool({std::string(QREXEC_BIN_DIR) + "/qrexec-policy", "--help"});
  EXPECT_EQ(r.status, 0);
}

TEST(PolicyExec, ABrokenPolicyDeniesWithExitOne) {
  TempDir dir;
  dir.Write("p/30-user.policy", "* * @anyvm @anyvm permit\n");
  RunResult r = RunTool({std::string(QREXEC_BIN_DIR) + "/qrexec-policy-exec", "--path",
                     dir.path() + "/p", "--system-info",
                     SharedConformanceDir() + "/system-info.json", "--explain", "test-vm1",
                     "test-vm2", "test.Service"});
  EXPECT_EQ(r.status, 1);
  json got = json::parse(r.out, nullptr, false);
  ASSERT_TRUE(got.is_object()) << r.out;
  EXPECT_EQ(got["result"], "deny");
  EXPECT_TRUE(got["rule"].is_null());
  EXPECT_EQ(got["notify"], false);
  EXPECT_EQ(got["reason"], dir.path() + "/p/30-user.policy:1: invalid action: permit");
}

TEST(PolicyExec, JustEvaluateAndAssumeYesFlags) {
  TempDir dir;
  dir.Write("p/30-user.policy", "* * @anyvm @anyvm ask\n");
  std::vector<std::string> base = {std::string(QREXEC_BIN_DIR) + "/qrexec-policy-exec", "--path",
                                   dir.path() + "/p", "--system-info",
                                   SharedConformanceDir() + "/system-info.json"};
  auto with = [&](std::vector<std::string> extra) {
    std::vector<std::string> a = base;
    a.insert(a.end(), extra.begin(), extra.end());
    return RunTool(a);
  };
  EXPECT_EQ(with({"--just-evaluate", "test-vm1", "test-vm2", "x"}).out, "result=deny\n");
  RunResult r = with({"--just-evaluate", "--assume-yes-for-ask", "test-vm1", "test-vm2", "x"});
  EXPECT_EQ(r.out, "result=allow\n");
  EXPECT_EQ(r.status, 0);
  r = with({"--assume-yes-for-ask", "test-vm1", "test-vm2", "x"});
  EXPECT_EQ(r.status, 0);
  EXPECT_NE(r.out.find("\nresult=allow\n"), std::string::npos);
}

TEST(PolicyExec, SystemInfoComesFromTheQubesdSocketWhenNoFileIsGiven) {
  TempDir dir;
  dir.Write("p/30-user.policy", "* * test-vm1 test-vm2 allow\n");
  // Nothing listens there: the call is refused.
  RunResult r = RunTool({std::string(QREXEC_BIN_DIR) + "/qrexec-policy-exec", "--path",
                     dir.path() + "/p", "--qubesd-socket", dir.path() + "/nope.sock", "test-vm1",
                     "test-vm2", "x"});
  EXPECT_EQ(r.status, 1);
  EXPECT_EQ(r.out, "result=deny\n");
}

}  // namespace
}  // namespace qrexec::policy
