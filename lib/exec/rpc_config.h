// Per-service rpc-config files (qrexec-protocol.md §4.3).
//
// A line scanner enforces the stricter Qubes subset: one `key = value` per
// line, '#' comments and empty lines; keys [A-Za-z][A-Za-z0-9._-]*; values
// true/false, decimal integers without sign or leading zeros (at most
// 2^64-1), or single-quoted strings. Rejected (kMalformed): NUL bytes,
// leading whitespace, section headers, double-quoted or triple-quoted
// strings, other value forms, junk after a value. Unknown keys are logged
// (warning) and ignored whatever their valid value, and may repeat, as in
// Qubes. The lines of the five known keys are then parsed with toml++, which
// rejects: a known key given twice, integers except 0/1 for
// wait-for-session, wrong value types, an empty force-user, and force-user
// together with any of skip-service-descriptor / exit-on-service-eof /
// exit-on-client-eof set to true.
//
// A failure to read or parse makes the call fail with 125.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "base/result.h"
#include "exec/service_lookup.h"

namespace qrexec::exec {

inline constexpr size_t kMaxRpcConfigSize = 64 * 1024;  // larger files are an error

struct RpcConfig {
  bool wait_for_session = false;
  std::optional<std::string> force_user;  // non-empty when set
  bool skip_service_descriptor = false;
  bool exit_on_service_eof = false;
  bool exit_on_client_eof = false;

  bool operator==(const RpcConfig&) const = default;
};

// Parses the text of one config file. `origin` (the file name) only
// appears in log and error messages.
Result<RpcConfig> ParseRpcConfig(std::string_view untrusted_text, std::string_view origin = "");

// Finds the config for SERVICE[+ARG] with the service lookup order
// (FindServiceFile) and parses it; no file -> defaults. Errors: lstat/read
// failures (kInternal), a non-regular file or a parse error (kMalformed).
Result<RpcConfig> LoadRpcConfig(const SearchPath& config_path, std::string_view service_name,
                                const std::optional<std::string>& argument);

}  // namespace qrexec::exec
