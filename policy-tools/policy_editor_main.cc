// qubes-policy-editor [[include/]FILE]: edits a policy file (default 30-user)
// safely. Fetches it over the admin API (a missing file starts empty and is
// created with the "new" token), opens ${VISUAL:-${EDITOR:-vi}} on a copy in
// a temporary file, checks the copy with qubes-policy-lint (-i for include
// files) and, when clean, replaces the file with the token it was fetched
// with, so a concurrent change is not overwritten. After a failed check the
// user chooses (e)dit again or (q)uit. Exit 0 on success or quit, 1 when the
// fetch, the editor or the replace failed (the copy is kept then).
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>
#include <vector>
#include <string>

#include "base/unique_fd.h"
#include "policy_client.h"

namespace qrexec::policy_tools {
namespace {

bool IsRpcNameChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '+' ||
         c == '-' || c == '.' || c == '_';
}

// Runs argv (no shell) and returns its exit status (-1 when it could not run).
int RunCommand(const std::vector<std::string>& argv) {
  std::vector<char*> args;
  for (const std::string& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
  args.push_back(nullptr);
  pid_t pid = ::fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

std::string LintPath() {
  char buf[4096];
  ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n > 0) {
    std::string self(buf, static_cast<size_t>(n));
    std::string beside = self.substr(0, self.find_last_of('/')) + "/qubes-policy-lint";
    if (::access(beside.c_str(), X_OK) == 0) return beside;
  }
  return "/usr/bin/qubes-policy-lint";
}

// Edits `path` until it lints clean; false when the user quits.
bool EditUntilClean(const std::string& path, bool include) {
  for (;;) {
    // The editor variable may hold arguments, so it goes through the shell.
    if (RunCommand({"/bin/sh", "-c", "${VISUAL:-${EDITOR:-vi}} -- \"$1\"", "sh", path}) != 0) {
      std::fprintf(stderr, "Failed to open editor\n");
      std::exit(1);
    }
    std::vector<std::string> lint = {LintPath()};
    if (include) lint.push_back("--include-service");
    lint.insert(lint.end(), {"--", path});
    if (RunCommand(lint) == 0) return true;
    std::fprintf(stderr, "Linting failed, do you want to:\n  (e)dit again\n  (q)uit without saving changes?\n");
    for (std::string reply;;) {
      std::fprintf(stderr, "What now? ");
      if (!std::getline(std::cin, reply) || reply == "q") return false;
      if (reply == "e") break;
    }
  }
}

int Main(int argc, char** argv) {
  if (argc > 2) {
    std::fprintf(stderr, "usage: qubes-policy-editor [[include/]FILE]\n");
    return 2;
  }
  std::string name = argc == 2 ? argv[1] : "30-user";
  if (name == "-h" || name == "--help") {
    std::printf("usage: qubes-policy-editor [[include/]FILE]\n");
    return 0;
  }
  bool include = name.starts_with("include/");
  if (include) name = name.substr(8);
  for (char c : name)
    if (!IsRpcNameChar(c)) {
      std::fprintf(stderr, "invalid character(s) in the file name: '%c'\n", c);
      return 1;
    }
  if (name.ends_with(".policy")) name.resize(name.size() - 7);

  AdminCall get = CallPolicyAdmin("Get", include, name, "");
  std::string token = "new", content;
  if (get.exit_code == 0) {
    size_t newline = get.out.find('\n');
    token = get.out.substr(0, newline);
    content = newline == std::string::npos ? "" : get.out.substr(newline + 1);
  } else if (get.error_kind != "PolicyAdminFileNotFoundException") {
    std::fprintf(stderr, "Failed to get policy '%s': %s\n", name.c_str(),
                 get.error_kind.empty() ? get.err.c_str() : get.error_message.c_str());
    return 1;
  }
  std::string suffix = include ? "_include_" + name : "_" + name + ".policy";
  std::string path = "/tmp/tmpXXXXXX" + suffix;
  UniqueFd fd(::mkstemps(path.data(), static_cast<int>(suffix.size())));
  if (!fd.valid() || ::write(fd.get(), content.data(), content.size()) !=
                         static_cast<ssize_t>(content.size())) {
    std::fprintf(stderr, "cannot write a temporary file\n");
    return 1;
  }
  fd.reset();
  if (!EditUntilClean(path, include)) {
    ::unlink(path.c_str());
    return 0;
  }
  std::ifstream in(path, std::ios::binary);
  std::ostringstream edited;
  edited << in.rdbuf();
  AdminCall replace = CallPolicyAdmin("Replace", include, name, token + "\n" + edited.str());
  if (replace.exit_code != 0) {
    std::fprintf(stderr, "Failed to replace policy '%s' with file '%s': %s\n", name.c_str(),
                 path.c_str(), replace.error_kind.empty() ? replace.err.c_str()
                                                          : replace.error_message.c_str());
    return 1;
  }
  ::unlink(path.c_str());
  return 0;
}

}  // namespace
}  // namespace qrexec::policy_tools

int main(int argc, char** argv) { return qrexec::policy_tools::Main(argc, argv); }
