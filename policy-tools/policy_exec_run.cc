#include "policy_exec_run.h"

#include <spawn.h>
#include <sys/wait.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <vector>

#include "base/log.h"
#include "policy/qubesd_client.h"

extern char** environ;

namespace qrexec::policy_tools {
namespace {

std::map<std::string, std::string> AnswerFields(const std::string& answer) {
  std::map<std::string, std::string> fields;
  size_t pos = 0;
  while (pos <= answer.size()) {
    size_t nl = answer.find('\n', pos);
    if (nl == std::string::npos) nl = answer.size();
    std::string line = answer.substr(pos, nl - pos);
    if (size_t eq = line.find('='); eq != std::string::npos)
      fields.emplace(line.substr(0, eq), line.substr(eq + 1));
    pos = nl + 1;
  }
  return fields;
}

bool StartVm(const std::string& socket, const std::string& vm) {
  auto r = policy::QubesdCall(socket, "admin.vm.Start", "", vm);
  if (r || r.error().message.find("QubesVMNotHaltedError") != std::string::npos) return true;
  LOG_ERROR("cannot start {}: {}", vm, r.error().message);
  return false;
}

}  // namespace

int RunAllowedCall(const policy::Decision& allow, const std::string& domid,
                   const std::string& process_ident, const RunOptions& options) {
  auto fields = AnswerFields(allow.answer);
  std::string target = fields["target"];
  std::string source = fields.count("policy_source") ? fields["policy_source"] : allow.source;
  std::string service = fields.count("service") ? fields["service"] : allow.service + allow.argument;
  bool autostart = fields["autostart"] == "True";
  std::string flags = "-Ed";
  if (target.rfind("@dispvm:", 0) == 0) {
    if (!autostart) {
      LOG_ERROR("a disposable needs autostart; refusing");
      return 1;
    }
    auto created = policy::QubesdCall(options.qubesd_socket, "admin.vm.CreateDisposable", "",
                                      target.substr(8));
    if (!created) {
      LOG_ERROR("cannot create a disposable from {}: {}", target.substr(8),
                created.error().message);
      return 1;
    }
    target = *created;
    flags = "-EWkd";
    if (!StartVm(options.qubesd_socket, target)) return 1;
  } else if (autostart && target != "dom0") {
    if (!StartVm(options.qubesd_socket, target)) return 1;
  }
  std::string command = fields["user"] + ":QUBESRPC " + service + " " + source;
  std::vector<std::string> args = {options.qrexec_client, flags, target, "-c",
                                   process_ident + "," + source + "," + domid, "--", command};
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid;
  int rc = posix_spawn(&pid, argv[0], nullptr, nullptr, argv.data(), environ);
  if (rc != 0) {
    LOG_ERROR("cannot run {}: {}", options.qrexec_client, std::strerror(rc));
    return 1;
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  return 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

}  // namespace qrexec::policy_tools
