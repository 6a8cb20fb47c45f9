#include "policy_client.h"

#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <string>
#include <vector>

#include "base/unique_fd.h"

namespace qrexec::policy_tools {
namespace {

std::string SelfDir() {
  char buf[PATH_MAX];
  ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return {};
  std::string path(buf, static_cast<size_t>(n));
  return path.substr(0, path.find_last_of('/'));
}

std::string FindProgram(const char* name) {
  for (const std::string& dir : {SelfDir(), std::string("/usr/bin")}) {
    std::string path = dir + "/" + name;
    if (!dir.empty() && ::access(path.c_str(), X_OK) == 0) return path;
  }
  return {};
}

std::string ReadBack(int fd) {
  std::string data;
  ::lseek(fd, 0, SEEK_SET);
  char buf[65536];
  for (ssize_t n; (n = ::read(fd, buf, sizeof buf)) != 0;) {
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) break;
    data.append(buf, static_cast<size_t>(n));
  }
  return data;
}

// Runs argv with stdin/stdout/stderr in memory files, so no pipe can fill.
AdminCall Run(const std::vector<std::string>& argv, std::string_view payload) {
  AdminCall call;
  UniqueFd in(::memfd_create("payload", MFD_CLOEXEC)), out(::memfd_create("out", MFD_CLOEXEC)),
      err(::memfd_create("err", MFD_CLOEXEC));
  if (!in.valid() || !out.valid() || !err.valid()) return call;
  for (std::string_view left = payload; !left.empty();) {
    ssize_t n = ::write(in.get(), left.data(), left.size());
    if (n <= 0) return call;
    left.remove_prefix(static_cast<size_t>(n));
  }
  ::lseek(in.get(), 0, SEEK_SET);
  std::vector<char*> args;
  for (const std::string& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
  args.push_back(nullptr);
  pid_t pid = ::fork();
  if (pid < 0) return call;
  if (pid == 0) {
    ::dup2(in.get(), 0);
    ::dup2(out.get(), 1);
    ::dup2(err.get(), 2);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  call.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  call.out = ReadBack(out.get());
  call.err = ReadBack(err.get());
  return call;
}

}  // namespace

AdminCall CallPolicyAdmin(std::string_view method, bool include, std::string_view argument,
                          std::string_view payload) {
  std::string service = std::string(include ? "policy.include." : "policy.") + std::string(method);
  if (!argument.empty()) service += "+" + std::string(argument);
  std::vector<std::string> argv;
  if (std::string client = FindProgram("qrexec-client"); !client.empty())
    argv = {client, "-d", "dom0", "DEFAULT:QUBESRPC " + service + " dom0"};
  else
    argv = {FindProgram("qrexec-client-vm"), "--", "dom0", service};
  AdminCall call = argv[0].empty() ? AdminCall{} : Run(argv, payload);
  if (call.exit_code != 0) {
    std::string_view err = call.err;
    std::string_view kind = err.substr(0, err.find(' '));
    if (kind.starts_with("PolicyAdmin") && kind.ends_with("Exception") && kind.size() < err.size()) {
      call.error_kind = kind;
      call.error_message = err.substr(kind.size() + 1);
    }
  }
  return call;
}

}  // namespace qrexec::policy_tools
