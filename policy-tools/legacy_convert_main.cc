// qrexec-legacy-convert: moves the rules of the R4.0 policy files
// (/etc/qubes-rpc/policy/SERVICE[+ARG]) into new-format files of
// /etc/qubes/policy.d (the choice is legacy_convert.h's), then checks that the
// effective policy did not change.
//
//  1. Snapshot: the lines of the full policy graph (qrexec-policy-graph
//     --full-output, drawn in-process) of the policy directory, plus the
//     outcome of every call a rule names (CallOutcomes, which sees what the
//     graph cannot).
//  2. Each target file that exists is copied to NAME.bak (.bak.bak, ... if
//     taken) and then written with the moved rules in front of its text.
//  3. Every regular file of the legacy directory is renamed to NAME.rpmsave
//     (.rpmsave.rpmsave, ... if taken), except those already ending so.
//  4. Snapshot again. If the two differ, the lines only in the old and only in
//     the new one are printed and the user is asked whether to restore; any
//     answer but "n"/"N" (end of input too) puts every file back: written
//     files from their .bak or removed, legacy files renamed back. Exit 1.
//
// No options besides -h/--help (exit 0); anything else is a usage error
// (exit 2). Exit 1 when the policy cannot be loaded, system info cannot be
// had, a file cannot be written or renamed (what was done is undone), or
// after a restore. Environment, for tests and staged roots:
// QREXEC_POLICY_DIR (default /etc/qubes/policy.d), QREXEC_LEGACY_POLICY_DIR
// (default /etc/qubes-rpc/policy), QREXEC_QUBESD_SOCKET (system info).
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "base/log.h"
#include "base/sys.h"
#include "graph.h"
#include "legacy_convert.h"
#include "policy/loader.h"
#include "policy/qubesd_client.h"

namespace qrexec::policy_tools {
namespace {

namespace fs = std::filesystem;

constexpr const char* kUsage = "usage: qrexec-legacy-convert [-h]\n";

struct Paths {
  std::string policy_dir;
  std::string legacy_dir;
};

std::string EnvOr(const char* name, const char* fallback) {
  const char* value = std::getenv(name);
  return value != nullptr && *value != '\0' ? value : fallback;
}

Result<policy::Policy> Load(const Paths& paths, bool compat40) {
  policy::LoadOptions load;
  load.dirs = {paths.policy_dir};
  load.legacy_dir = paths.legacy_dir;
  load.compat40 = compat40;
  return policy::LoadPolicy(load);
}

// What the two snapshots compare: the lines of the full graph (the
// reference's check) and the outcome of each named call (CallOutcomes).
std::set<std::string> PolicyState(const policy::Policy& policy, const policy::SystemInfo& info,
                                  const std::set<NamedCall>& calls) {
  GraphOptions options;
  options.full_output = true;
  std::istringstream text(DrawPolicyGraph(policy, info, options));
  std::set<std::string> lines = CallOutcomes(policy, info, calls);
  for (std::string line; std::getline(text, line);) lines.insert(line);
  return lines;
}

// First free name of PATH+SUFFIX, PATH+SUFFIX+SUFFIX, ...
fs::path FreeName(const fs::path& path, const std::string& suffix) {
  std::string name = path.string() + suffix;
  std::error_code ec;
  while (fs::exists(fs::symlink_status(name, ec))) name += suffix;
  return name;
}

// Everything changed so far, so that it can be put back in reverse order.
class Changes {
 public:
  // `backup` empty: the file did not exist before.
  void Wrote(fs::path file, fs::path backup) {
    steps_.push_back({std::move(file), std::move(backup), false});
  }
  void Renamed(fs::path from, fs::path to) {
    steps_.push_back({std::move(from), std::move(to), true});
  }

  // Puts every file back; reports (and goes past) the steps that fail.
  bool Undo() {
    bool ok = true;
    for (auto it = steps_.rbegin(); it != steps_.rend(); ++it) {
      std::error_code ec;
      if (it->renamed || !it->other.empty())
        fs::rename(it->other, it->path, ec);
      else
        fs::remove(it->path, ec);
      if (ec) {
        std::fprintf(stderr, "qrexec-legacy-convert: cannot restore %s: %s\n", it->path.c_str(),
                     ec.message().c_str());
        ok = false;
      }
    }
    steps_.clear();
    return ok;
  }

 private:
  struct Step {
    fs::path path;   // the file as it was named before
    fs::path other;  // its backup or new name
    bool renamed;
  };
  std::vector<Step> steps_;
};

// Writes `text` to a hidden temporary file and renames it over `path`, so a
// policy daemon watching the directory never loads half a file.
bool WriteAtomically(const fs::path& path, const std::string& text) {
  fs::path temp = path.parent_path() / ("." + path.filename().string() + ".tmp");
  {
    std::ofstream out(temp, std::ios::binary | std::ios::trunc);
    out << text;
    out.flush();
    if (!out) return false;
  }
  std::error_code missing, ec;
  if (auto status = fs::status(path, missing); !missing)  // an existing file keeps its mode
    fs::permissions(temp, status.permissions(), ec);
  if (!ec) fs::rename(temp, path, ec);
  if (ec) {
    std::error_code ignored;
    fs::remove(temp, ignored);
  }
  return !ec;
}

bool WriteFiles(const std::vector<ConvertedFile>& files, const Paths& paths, Changes& changes) {
  for (const ConvertedFile& file : files) {
    fs::path path = fs::path(paths.policy_dir) / (file.stem + policy::kPolicySuffix);
    std::optional<std::string> current;
    fs::path backup;
    std::error_code ec;
    if (fs::exists(fs::symlink_status(path, ec))) {
      current = sys::ReadWholeFile(path);
      backup = FreeName(path, ".bak");
      if (!current || !fs::copy_file(path, backup, ec)) {
        std::fprintf(stderr, "qrexec-legacy-convert: cannot back up %s\n", path.c_str());
        return false;
      }
    }
    std::printf("Writing %s...\n", path.c_str());
    if (!WriteAtomically(path, ConvertedFileText(file.stem, file.rules, current))) {
      std::fprintf(stderr, "qrexec-legacy-convert: cannot write %s\n", path.c_str());
      if (!backup.empty()) fs::remove(backup, ec);
      return false;
    }
    changes.Wrote(path, backup);
  }
  return true;
}

bool RetireLegacyFiles(const Paths& paths, Changes& changes) {
  std::vector<fs::path> files;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(paths.legacy_dir, ec))
    if (entry.is_regular_file() && !entry.path().string().ends_with(".rpmsave"))
      files.push_back(entry.path());
  if (ec == std::errc::no_such_file_or_directory) return true;  // nothing left to retire
  if (ec) {
    std::fprintf(stderr, "qrexec-legacy-convert: cannot list %s: %s\n", paths.legacy_dir.c_str(),
                 ec.message().c_str());
    return false;
  }
  std::sort(files.begin(), files.end());
  for (const fs::path& file : files) {
    fs::path saved = FreeName(file, ".rpmsave");
    fs::rename(file, saved, ec);
    if (ec) {
      std::fprintf(stderr, "qrexec-legacy-convert: cannot rename %s: %s\n", file.c_str(),
                   ec.message().c_str());
      return false;
    }
    changes.Renamed(file, saved);
  }
  return true;
}

void PrintDifferences(const std::set<std::string>& before,
                      const tl::expected<std::set<std::string>, std::string>& after) {
  static const std::set<std::string> kNothing;
  const std::set<std::string>& now = after ? *after : kNothing;
  std::printf(
      "ERROR: Found the following differences between previous and converted policy "
      "states:\nOLD STATE\n");
  for (const std::string& line : before)
    if (!now.count(line)) std::printf("%s\n", line.c_str());
  std::printf("NEW STATE\n");
  if (!after) std::printf("(the converted policy does not load: %s)\n", after.error().c_str());
  for (const std::string& line : now)
    if (!before.count(line)) std::printf("%s\n", line.c_str());
}

// Any answer but n/N, end of input included, means yes.
bool AskRestore() {
  std::printf("Do you want to restore initial state? [Y/n] ");
  std::fflush(stdout);
  std::string answer;
  if (!std::getline(std::cin, answer)) {
    std::printf("\n");
    return true;
  }
  return answer != "n" && answer != "N";
}

int Fail(const std::string& message) {
  std::fprintf(stderr, "qrexec-legacy-convert: %s\n", message.c_str());
  return 1;
}

int Convert(const Paths& paths) {
  std::printf("Initiating policy conversion process...\n");
  std::fflush(stdout);
  auto info = policy::FetchSystemInfo(policy::QubesdSocketPath());
  if (!info) return Fail("system info: " + info.error().ToString());
  auto with_compat = Load(paths, true);
  if (!with_compat) return Fail(with_compat.error().message);
  std::printf("Converting old policy files into new format files....\n");
  auto without_compat = Load(paths, false);
  if (!without_compat) return Fail(without_compat.error().message);
  std::vector<ConvertedFile> files = PlanLegacyConversion(*with_compat, *without_compat);

  Changes changes;
  if (!WriteFiles(files, paths, changes) || !RetireLegacyFiles(paths, changes)) {
    bool undone = changes.Undo();
    return Fail(undone ? "nothing was converted" : "the conversion was only partly undone");
  }
  // Both states walk the calls either policy names.
  std::set<NamedCall> calls = NamedCalls(*with_compat);
  tl::expected<std::set<std::string>, std::string> after;
  if (auto converted = Load(paths, true)) {
    calls.merge(NamedCalls(*converted));
    after = PolicyState(*converted, *info, calls);
  } else {
    after = tl::unexpected(converted.error().message);
  }
  const std::set<std::string> before = PolicyState(*with_compat, *info, calls);
  if (!after || *after != before) {
    PrintDifferences(before, after);
    if (AskRestore()) {
      bool restored = changes.Undo();
      std::printf(restored ? "Conversion reverted.\n" : "Conversion partly reverted.\n");
      return 1;
    }
  }
  std::printf("Successfully converted old policy to new format.\n");
  return 0;
}

int Main(int argc, char** argv) {
  log::SetProgramName("qrexec-legacy-convert");
  log::SetMinLevel(log::Level::kWarning);  // the loader's notes on skipped files are not news
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "-h" || arg == "--help") {
      std::printf(
          "%s\nMoves the rules of the R4.0 policy files (/etc/qubes-rpc/policy) into\n"
          "/etc/qubes/policy.d and checks that the effective policy stays the same.\n\n"
          "options:\n  -h, --help  show this help message and exit\n",
          kUsage);
      return 0;
    }
  }
  if (argc > 1) {
    std::string rest;
    for (int i = 1; i < argc; ++i) rest += std::string(i > 1 ? " " : "") + argv[i];
    std::fprintf(stderr, "%sqrexec-legacy-convert: error: unrecognized arguments: %s\n", kUsage,
                 rest.c_str());
    return 2;
  }
  Paths paths{EnvOr("QREXEC_POLICY_DIR", policy::kPolicyPath),
              EnvOr("QREXEC_LEGACY_POLICY_DIR", policy::kLegacyPolicyPath)};
  return Convert(paths);
}

}  // namespace
}  // namespace qrexec::policy_tools

int main(int argc, char** argv) { return qrexec::policy_tools::Main(argc, argv); }
