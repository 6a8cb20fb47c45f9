// qrexec-policy-graph: draws the policy as a Graphviz digraph
// (policy-language.md §5.6). --source/--target/--service take one or more
// values (like the reference's nargs='+') and may be repeated.
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "base/log.h"
#include "graph.h"
#include "policy/loader.h"
#include "policy/qubesd_client.h"
#include "policy/token.h"

namespace qrexec::policy_tools {
namespace {

struct Args {
  GraphOptions graph;
  std::string output;
  std::vector<std::string> policy_dirs;
  std::string system_info;
};

void Usage(FILE* out) {
  std::fprintf(out,
               "usage: qrexec-policy-graph [--include-ask] [--source VM...] [--target VM...]\n"
               "         [--service SVC[+ARG]...] [--output FILE] [--policy-dir DIR]\n"
               "         [--system-info FILE] [--skip-labels] [--full-output]\n");
}

// Returns 0 on success, the exit code otherwise.
int Parse(int argc, char** argv, Args& args) {
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    std::string inline_value;
    bool has_inline = false;
    if (auto eq = arg.find('='); arg.starts_with("--") && eq != std::string::npos) {
      inline_value = arg.substr(eq + 1);
      arg.resize(eq);
      has_inline = true;
    }
    auto one = [&](std::string& out) {
      if (has_inline) return out = inline_value, true;
      if (i + 1 >= argc) return false;
      out = argv[++i];
      return true;
    };
    auto many = [&](std::vector<std::string>& out) {
      if (has_inline) return out.push_back(inline_value), true;
      size_t before = out.size();
      while (i + 1 < argc && argv[i + 1][0] != '-') out.push_back(argv[++i]);
      return out.size() > before;
    };
    bool ok = true;
    if (arg == "--include-ask")
      args.graph.include_ask = true;
    else if (arg == "--full-output")
      args.graph.full_output = true;
    else if (arg == "--skip-labels")
      args.graph.skip_labels = true;
    else if (arg == "--source")
      ok = many(args.graph.sources);
    else if (arg == "--target")
      ok = many(args.graph.targets);
    else if (arg == "--service")
      ok = many(args.graph.services);
    else if (arg == "--output")
      ok = one(args.output);
    else if (arg == "--system-info")
      ok = one(args.system_info);
    else if (arg == "--policy-dir") {
      std::string dir;
      ok = one(dir);
      args.policy_dirs.push_back(dir);
    } else if (arg == "-h" || arg == "--help") {
      Usage(stdout);
      std::exit(0);
    } else {
      ok = false;
    }
    if (!ok) {
      Usage(stderr);
      return 2;
    }
  }
  return 0;
}

bool HaveDot() {
  const char* path = std::getenv("PATH");
  std::string dirs = path ? path : "/usr/bin:/bin";
  size_t start = 0;
  while (start <= dirs.size()) {
    size_t end = dirs.find(':', start);
    if (end == std::string::npos) end = dirs.size();
    std::string candidate = dirs.substr(start, end - start) + "/dot";
    if (::access(candidate.c_str(), X_OK) == 0) return true;
    start = end + 1;
  }
  return false;
}

// Renders `dot_text` to PNG at `output` with Graphviz (no shell).
int WritePng(const std::string& dot_text, const std::string& output) {
  std::string dot_file = output + ".dot.tmp";
  {
    std::ofstream out(dot_file, std::ios::binary);
    out << dot_text;
    if (!out) {
      std::fprintf(stderr, "qrexec-policy-graph: cannot write %s\n", dot_file.c_str());
      return 1;
    }
  }
  std::string out_arg = "-o" + output;
  std::vector<char*> argv = {const_cast<char*>("dot"), const_cast<char*>("-Tpng"), out_arg.data(),
                             dot_file.data(), nullptr};
  pid_t pid = ::fork();
  if (pid == 0) {
    ::execvp("dot", argv.data());
    ::_exit(127);
  }
  int status = 0;
  if (pid > 0) ::waitpid(pid, &status, 0);
  ::unlink(dot_file.c_str());
  if (pid < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::fprintf(stderr, "qrexec-policy-graph: dot failed\n");
    return 1;
  }
  return 0;
}

// The reference's checks: each --source must be a valid source token and
// each --target a valid redirect (an actual call target). Returns 0 or 2.
int CheckFilters(const Args& args) {
  auto refuse = [](const std::string& what) {
    Usage(stderr);
    std::fprintf(stderr, "qrexec-policy-graph: error: %s\n", what.c_str());
    return 2;
  };
  for (const std::string& source : args.graph.sources)
    if (!policy::ParseToken(source, policy::TokenContext::kSource))
      return refuse("--source " + source + " is not a valid call source");
  for (const std::string& target : args.graph.targets)
    if (!policy::ParseToken(target, policy::TokenContext::kRedirect))
      return refuse("--target " + target + " is not a valid actual call target");
  return 0;
}

int Main(int argc, char** argv) {
  log::SetProgramName("qrexec-policy-graph");
  Args args;
  if (int rc = Parse(argc, argv, args); rc != 0) return rc;
  if (int rc = CheckFilters(args); rc != 0) return rc;
  policy::LoadOptions load;
  load.dirs =
      args.policy_dirs.empty() ? std::vector<std::string>{policy::kPolicyPath} : args.policy_dirs;
  auto loaded = policy::LoadPolicy(load);
  if (!loaded) {
    std::fprintf(stderr, "qrexec-policy-graph: %s\n", loaded.error().message.c_str());
    return 1;
  }
  auto info = args.system_info.empty() ? policy::FetchSystemInfo(policy::QubesdSocketPath())
                                       : policy::SystemInfo::FromFile(args.system_info);
  if (!info) {
    std::fprintf(stderr, "qrexec-policy-graph: system info: %s\n", info.error().ToString().c_str());
    return 1;
  }
  std::string dot_text = DrawPolicyGraph(*loaded, *info, args.graph);
  if (args.output.empty()) {
    std::fwrite(dot_text.data(), 1, dot_text.size(), stdout);
    return 0;
  }
  if (args.output.ends_with(".png")) {
    if (HaveDot()) return WritePng(dot_text, args.output);
    std::fprintf(stderr, "qrexec-policy-graph: dot is not installed; writing Graphviz text\n");
  }
  std::ofstream out(args.output, std::ios::binary);
  out << dot_text;
  if (!out) {
    std::fprintf(stderr, "qrexec-policy-graph: cannot write %s\n", args.output.c_str());
    return 1;
  }
  return 0;
}

}  // namespace
}  // namespace qrexec::policy_tools

int main(int argc, char** argv) { return qrexec::policy_tools::Main(argc, argv); }
