// qrexec-policy-exec (also installed as qrexec-policy): evaluate one qrexec
// call against the policy and print the answer (qrexec-protocol.md §1.8,
// policy-language.md §5.3).
//
//   qrexec-policy-exec [options] [--] SOURCE TARGET SERVICE[+ARG]
//
// Prints the policy.sock answer plus a newline and exits 0 for allow, 1 for
// anything else; with --explain it prints one JSON object instead.
#include <cstdio>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "base/log.h"
#include "policy/evaluate.h"
#include "policy/loader.h"
#include "policy/qubesd_client.h"
#include "policy/system_info.h"
#include "policy_exec_ask.h"
#include "policy_exec_run.h"

namespace {

using namespace qrexec;

constexpr const char* kUsage =
    "usage: qrexec-policy-exec [-h] [--assume-yes-for-ask] [--just-evaluate]\n"
    "                          [--path DIR]... [--legacy-path DIR] [--system-info FILE]\n"
    "                          [--qubesd-socket PATH] [--requested-source NAME] [--explain]\n"
    "                          [--agent-socket PATH] [--direct-agent] [--qrexec-client PATH]\n"
    "                          [--] SOURCE TARGET SERVICE[+ARG]\n";

struct Options {
  bool assume_yes = false;
  bool just_evaluate = false;
  bool explain = false;
  std::vector<std::string> paths;
  std::string legacy_path = policy::kLegacyPolicyPath;
  std::string system_info_file;
  std::string qubesd_socket;
  std::string requested_source;
  policy_tools::ExecAgentRoute agent;
  std::vector<std::string> positional;
};

int UsageError(const std::string& message) {
  std::fprintf(stderr, "%sqrexec-policy-exec: error: %s\n", kUsage, message.c_str());
  return 2;
}

// Returns 0 to go on, or an exit code.
int ParseArgs(int argc, char** argv, Options& opts, bool& done) {
  done = false;
  bool only_positional = false;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (only_positional || arg.empty() || arg[0] != '-' || arg == "-") {
      opts.positional.push_back(arg);
      continue;
    }
    if (arg == "--") {
      only_positional = true;
      continue;
    }
    std::string value;
    bool has_inline = false;
    if (auto eq = arg.find('='); arg.rfind("--", 0) == 0 && eq != std::string::npos) {
      value = arg.substr(eq + 1);
      arg = arg.substr(0, eq);
      has_inline = true;
    }
    auto need_value = [&](std::string& out) -> bool {
      if (has_inline) {
        out = value;
        return true;
      }
      if (i + 1 >= argc) return false;
      out = argv[++i];
      return true;
    };
    if (arg == "-h" || arg == "--help") {
      std::fputs(kUsage, stdout);
      done = true;
      return 0;
    } else if (arg == "--assume-yes-for-ask") {
      opts.assume_yes = true;
    } else if (arg == "--just-evaluate") {
      opts.just_evaluate = true;
    } else if (arg == "--explain") {
      opts.explain = true;
    } else if (arg == "--path" || arg == "--policy-path") {
      std::string dir;
      if (!need_value(dir)) return UsageError("argument --path: expected one argument");
      opts.paths.push_back(dir);
    } else if (arg == "--legacy-path") {
      if (!need_value(opts.legacy_path))
        return UsageError("argument --legacy-path: expected one argument");
    } else if (arg == "--system-info") {
      if (!need_value(opts.system_info_file))
        return UsageError("argument --system-info: expected one argument");
    } else if (arg == "--qubesd-socket") {
      if (!need_value(opts.qubesd_socket))
        return UsageError("argument --qubesd-socket: expected one argument");
    } else if (arg == "--agent-socket") {
      if (!need_value(opts.agent.agent_socket))
        return UsageError("argument --agent-socket: expected one argument");
    } else if (arg == "--direct-agent") {
      opts.agent.direct_for_all = true;
    } else if (arg == "--qrexec-client") {
      if (!need_value(opts.agent.qrexec_client))
        return UsageError("argument --qrexec-client: expected one argument");
    } else if (arg == "--requested-source") {
      if (!need_value(opts.requested_source))
        return UsageError("argument --requested-source: expected one argument");
    } else {
      return UsageError("unrecognized arguments: " + arg);
    }
  }
  if (opts.positional.size() != 3 && opts.positional.size() != 5)
    return UsageError("expected SOURCE TARGET SERVICE[+ARG]");
  return 0;
}

int Finish(const Options& opts, const policy::Decision& d, const policy::SystemInfo& info) {
  for (const std::string& w : d.warnings) LOG_WARNING("{}", w);
  if (d.verdict == policy::Verdict::kDeny && !d.reason.empty())
    LOG_INFO("{}", d.reason);
  if (opts.explain) {
    std::printf("%s\n", policy::ExplainJson(d, info).c_str());
  } else {
    std::printf("%s\n", d.answer.c_str());
  }
  std::fflush(stdout);
  const std::string& a = d.answer;
  bool allowed = a == "result=allow" || a.find("\nresult=allow\n") != std::string::npos;
  if (opts.explain) allowed = d.verdict == policy::Verdict::kAllow;
  return allowed ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  log::SetProgramName("qrexec-policy-exec");
  Options opts;
  bool done = false;
  if (int rc = ParseArgs(argc, argv, opts, done); rc != 0 || done) return rc;
  // Deprecated form: DOMID SOURCE TARGET SERVICE+ARG PROCESS_IDENT, which
  // also performs an allowed call.
  bool execute = opts.positional.size() == 5;
  size_t first = execute ? 1 : 0;
  policy::Request request =
      policy::MakeRequest(opts.positional[first], opts.positional[first + 1],
                          opts.positional[first + 2], opts.requested_source);

  policy::SystemInfo info;
  policy::LoadOptions load;
  load.dirs = opts.paths;
  load.legacy_dir = opts.legacy_path;
  auto loaded = policy::LoadPolicy(load);
  if (!loaded) LOG_ERROR("error loading policy: {}", loaded.error().message);

  auto system_info = opts.system_info_file.empty()
                         ? policy::FetchSystemInfo(policy::QubesdSocketPath(opts.qubesd_socket))
                         : policy::SystemInfo::FromFile(opts.system_info_file);
  if (!system_info) {
    LOG_ERROR("cannot get system info: {}", system_info.error().message);
    if (!loaded) return Finish(opts, policy::DenyForLoadError(loaded.error(), request), info);
    Error e = system_info.error();
    e.kind = ErrorKind::kInternal;  // not an AccessDenied: no notification
    return Finish(opts, policy::DenyForLoadError(e, request), info);
  }
  info = std::move(*system_info);

  policy::Decision d;
  if (!loaded) {
    d = policy::DenyForLoadError(loaded.error(), request);
  } else {
    d = policy::Evaluate(*loaded, info, request);
    // --explain alone describes the evaluation itself (ask stays ask).
    if (opts.explain && !opts.just_evaluate && !opts.assume_yes) return Finish(opts, d, info);
    d = policy::ApplyMode(d, info, opts.just_evaluate, opts.assume_yes);
    if (d.verdict == policy::Verdict::kAsk && !opts.explain)
      d = policy_tools::ResolveInteractiveAsk(d, info, opts.agent);
  }
  if (!opts.just_evaluate && !opts.explain) policy_tools::SendNotification(d, info, opts.agent);
  if (execute && !opts.explain && !opts.just_evaluate) {
    for (const std::string& w : d.warnings) LOG_WARNING("{}", w);
    if (d.verdict != policy::Verdict::kAllow) {
      LOG_INFO("{}", d.reason);
      return 1;
    }
    return policy_tools::RunAllowedCall(
        d, opts.positional[0], opts.positional[4],
        {policy::QubesdSocketPath(opts.qubesd_socket), opts.agent.qrexec_client});
  }
  return Finish(opts, d, info);
}
