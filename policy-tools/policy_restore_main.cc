// qrexec-policy-restore [--dest DIR] DIRECTORY: copies a saved policy
// directory (DIRECTORY/*.policy and DIRECTORY/include/*) into the live one
// (default /etc/qubes/policy.d). Include files are copied first, so that no
// copied file includes one not yet there. Existing files are never
// overwritten ("not overwriting P" on stderr). Exit 0, or 1 when the
// destination's include directory cannot be made or is not a directory.
#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "policy_admin.h"

namespace qrexec::policy_tools {
namespace {

namespace fs = std::filesystem;

std::vector<std::string> RegularFiles(const fs::path& dir, bool policy_only) {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    std::string name = entry.path().filename();
    if (!entry.is_regular_file() || name[0] == '.') continue;
    if (policy_only && !name.ends_with(".policy")) continue;
    names.push_back(name);
  }
  std::sort(names.begin(), names.end());
  return names;
}

void CopyNew(const fs::path& from, const fs::path& to) {
  std::error_code ec;
  if (fs::exists(fs::symlink_status(to))) {
    std::fprintf(stderr, "not overwriting %s\n", to.c_str());
    return;
  }
  if (!fs::copy_file(from, to, ec))
    std::fprintf(stderr, "cannot copy %s to %s: %s\n", from.c_str(), to.c_str(),
                 ec.message().c_str());
}

int Main(int argc, char** argv) {
  std::string dest = kAdminPolicyDir, source;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "-h" || arg == "--help") {
      std::printf("usage: qrexec-policy-restore [--dest DIRECTORY] DIRECTORY\n");
      return 0;
    } else if (arg == "--dest" && i + 1 < argc) {
      dest = argv[++i];
    } else if (arg.starts_with("--dest=")) {
      dest = arg.substr(7);
    } else if (source.empty() && !arg.starts_with("-")) {
      source = arg;
    } else {
      source.clear();
      break;
    }
  }
  if (source.empty()) {
    std::fprintf(stderr, "usage: qrexec-policy-restore [--dest DIRECTORY] DIRECTORY\n");
    return 2;
  }
  fs::path include = fs::path(dest) / "include";
  std::error_code ec;
  fs::create_directories(include, ec);
  if (ec) {
    std::fprintf(stderr, "cannot create directory %s [%s]\n", include.c_str(), ec.message().c_str());
    return 1;
  }
  if (fs::is_symlink(include) || !fs::is_directory(include)) {
    std::fprintf(stderr, "%s is not a directory, aborting\n", include.c_str());
    return 1;
  }
  for (const std::string& name : RegularFiles(fs::path(source) / "include", false))
    CopyNew(fs::path(source) / "include" / name, include / name);
  for (const std::string& name : RegularFiles(source, true))
    CopyNew(fs::path(source) / name, fs::path(dest) / name);
  return 0;
}

}  // namespace
}  // namespace qrexec::policy_tools

int main(int argc, char** argv) { return qrexec::policy_tools::Main(argc, argv); }
