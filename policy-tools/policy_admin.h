// The dom0 policy admin API (policy.List, policy.Get, policy.Replace,
// policy.Remove, policy.GetFiles and the policy.include.* variants), as the
// qubes-policy-admin service runs it. One request per process: the service
// name and argument come from QREXEC_SERVICE_FULL_NAME, the payload is all of
// stdin, the answer goes to stdout.
//
// Contract (the reference's semantics, which clients depend on):
//  - policy files are <dir>/NAME.policy, include files <dir>/include/NAME;
//    NAME is [A-Za-z0-9_-]+ and must resolve to a file directly inside that
//    directory (no traversal, no symlink out).
//  - Get answers "sha256:<hex of the file>\n" followed by the file's bytes;
//    that first line is the file's token.
//  - Replace takes "TOKEN\nCONTENT", Remove takes "TOKEN". TOKEN is the
//    current file's token, "new" (the file must not exist) or "any" (no
//    check). The whole policy directory is then parsed with the change
//    applied (LoadOptions::overrides); only if it loads is the change made.
//    Replace writes ".!NAME" beside the file, fsyncs it, renames it over the
//    file and fsyncs the directory, so readers see the old or the new text.
//  - Requests are serialized with an exclusive flock on the policy directory.
//  - A refused request is an AdminError whose `kind` is the reference's
//    exception class name (clients map it back to an exception type).
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include <tl/expected.hpp>

namespace qrexec::policy_tools {

inline constexpr const char* kAdminPolicyDir = "/etc/qubes/policy.d";
inline constexpr const char* kAdminLogFile = "/var/log/qubes/policy-admin.log";

// The error classes of the wire contract ("KIND MESSAGE" on stderr).
inline constexpr const char* kProtocolError = "PolicyAdminProtocolException";
inline constexpr const char* kTokenError = "PolicyAdminTokenException";
inline constexpr const char* kNotFoundError = "PolicyAdminFileNotFoundException";
inline constexpr const char* kSyntaxError = "PolicyAdminSyntaxException";
inline constexpr const char* kInvalidNameError = "PolicyAdminInvalidFileNameException";
inline constexpr const char* kInvalidPathError = "PolicyAdminInvalidFilePathException";

struct AdminError {
  std::string kind;  // one of the k*Error names above; empty: internal failure
  std::string message;
};

// The answer bytes (possibly empty), or why the request was refused.
using AdminResult = tl::expected<std::string, AdminError>;

class PolicyAdmin {
 public:
  explicit PolicyAdmin(std::string policy_dir);

  // Serves one request. `service` is e.g. "policy.include.Get", `argument`
  // the part after '+' ("" when none).
  AdminResult Handle(std::string_view service, std::string_view argument,
                     std::string_view payload);

 private:
  AdminResult List(bool include);
  AdminResult Get(bool include, std::string_view name);
  AdminResult Replace(bool include, std::string_view name, std::string_view payload);
  AdminResult Remove(bool include, std::string_view name, std::string_view payload);
  AdminResult GetFiles(std::string_view service);

  // The resolved path of NAME (plus ".policy" outside include/), or why not.
  tl::expected<std::string, AdminError> PathFor(bool include, std::string_view name) const;
  // Loads the policy directory with `content` (nullopt: removal) for `path`.
  tl::expected<void, AdminError> Validate(const std::string& path,
                                          std::optional<std::string> content) const;

  std::string policy_dir_;
  std::string include_dir_;
};

// "sha256:" + the hex SHA-256 of `data`.
std::string PolicyToken(std::string_view data);

}  // namespace qrexec::policy_tools
