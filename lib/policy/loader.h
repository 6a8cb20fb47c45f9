// Loading a policy set from directories (policy-language.md §1).
//
//   auto policy = policy::LoadPolicy({});                 // the system defaults
//   auto policy = policy::LoadPolicy({.dirs = {"/tmp/p"}});
//   if (!policy) deny, with policy.error().message
//
// Error kinds, which decide whether the refusal is notified (the reference's
// AccessDenied vs everything else):
//   kRefused   - "invalid filename: P", "failed to load P file: ..."
//                (AccessDenied in the reference: notify the user)
//   kMalformed - syntax errors "<file>:<line>: <message>", include problems
//                ("not a file: P", "not a directory: P"), include cycles, text
//                that is not UTF-8 (no notification)
// A Policy is immutable once built; share it freely between evaluations.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "policy/policy.h"

namespace qrexec::policy {

inline constexpr const char* kPolicyPath = "/etc/qubes/policy.d";
inline constexpr const char* kRuntimePolicyPath = "/run/qubes/policy.d";
inline constexpr const char* kLegacyPolicyPath = "/etc/qubes-rpc/policy";
inline constexpr const char* kPolicySuffix = ".policy";

// Include nesting deeper than this is refused (the reference recurses until
// Python's RecursionError); a file that is already being loaded is refused at
// once as an include cycle.
inline constexpr int kMaxIncludeDepth = 32;

struct LoadOptions {
  // Policy directories in priority order; empty means the defaults
  // {kRuntimePolicyPath, kPolicyPath}. A file in an earlier directory hides
  // the same-named file of a later one.
  std::vector<std::string> dirs;
  // The R4.0 per-service directory read by !compat-4.0. A missing directory
  // makes the load fail (fail closed, as the reference does).
  std::string legacy_dir = kLegacyPolicyPath;
  // False: a well-formed !compat-4.0 line loads nothing and `legacy_dir` is
  // never read (qrexec-legacy-convert tells the legacy rules apart this way).
  bool compat40 = true;
  // Proposed changes to validate before they are made (the policy admin API):
  // a file's resolved absolute path -> its new text, or nullopt for a file
  // about to be removed. The loader reads an overridden file from here, lists
  // new ones in their directory, skips removed ones, and refuses an include
  // of a removed file ("including a file that will be removed: P").
  std::map<std::string, std::optional<std::string>> overrides;
};

// Reads, validates and parses the whole policy set. Rules are numbered in
// priority order (Rule position == priority).
Result<Policy> LoadPolicy(const LoadOptions& options);

// Parses one new-format policy text held in memory, as if it were the only
// file (fuzzing, tests). `file_name` appears in locations and messages;
// `base_dir` resolves relative !include paths (the includes are real files).
Result<Policy> ParsePolicyText(std::string_view text, std::string_view file_name,
                               const LoadOptions& options = {},
                               std::string_view base_dir = ".");

// The file-name rule of §1.2: [0-9a-z_.-]+ (applied to the names that pass
// the .policy/dotfile filter).
bool IsValidPolicyFileName(std::string_view name);

}  // namespace qrexec::policy
