#include "daemon/policy_answer.h"

#include <array>

#include "base/escape_filter.h"
#include "base/log.h"

namespace qrexec::daemon {
namespace {

enum Key {
  kResult,
  kUser,
  kTarget,
  kTargetUuid,
  kAutostart,
  kRequestedTarget,
  kService,
  kPolicySource,
  kKeyCount
};

constexpr std::array<std::string_view, kKeyCount> kKeyNames = {
    "result",           "user",    "target",       "target_uuid", "autostart",
    "requested_target", "service", "policy_source"};

int KeyIndex(std::string_view key) {
  for (size_t i = 0; i < kKeyNames.size(); ++i)
    if (kKeyNames[i] == key) return static_cast<int>(i);
  return -1;
}

using Fields = std::array<std::optional<std::string>, kKeyCount>;

Result<Fields> SplitFields(std::string_view text) {
  Fields fields;
  while (true) {
    size_t end = text.find('\n');
    std::string_view line = text.substr(0, end);
    size_t eq = line.find('=');
    if (eq == std::string_view::npos)
      return MakeError(ErrorKind::kMalformed, "policy answer line without '='");
    int key = KeyIndex(line.substr(0, eq));
    if (key < 0) {
      LOG_DEBUG("ignoring policy answer line {}", SanitizeForLog(line));
    } else if (fields[key]) {
      return MakeError(ErrorKind::kMalformed,
                       "policy answer repeats " + std::string(kKeyNames[key]));
    } else {
      fields[key] = std::string(line.substr(eq + 1));
    }
    if (end == std::string_view::npos) return fields;
    text.remove_prefix(end + 1);
  }
}

Result<PolicyAnswer> FromFields(Fields& f) {
  PolicyAnswer answer;
  if (!f[kResult] || (*f[kResult] != "allow" && *f[kResult] != "deny"))
    return MakeError(ErrorKind::kMalformed, "policy answer has no valid result");
  answer.allow = *f[kResult] == "allow";
  bool any = f[kUser] || f[kTarget] || f[kRequestedTarget] || f[kAutostart];
  bool all = f[kUser] && f[kTarget] && f[kRequestedTarget] && f[kAutostart];
  if (!answer.allow) {
    if (any) return MakeError(ErrorKind::kMalformed, "policy deny carries allow fields");
    return answer;
  }
  if (!all) return MakeError(ErrorKind::kMalformed, "policy allow misses a required field");
  if (*f[kAutostart] != "True" && *f[kAutostart] != "False")
    return MakeError(ErrorKind::kMalformed, "policy answer has a bad autostart value");
  answer.autostart = *f[kAutostart] == "True";
  answer.user = std::move(*f[kUser]);
  answer.target = std::move(*f[kTarget]);
  answer.requested_target = std::move(*f[kRequestedTarget]);
  answer.target_uuid = std::move(f[kTargetUuid]);
  answer.service = std::move(f[kService]);
  answer.policy_source = std::move(f[kPolicySource]);
  return answer;
}

}  // namespace

Result<PolicyAnswer> ParsePolicyAnswer(std::string_view untrusted_text) {
  if (untrusted_text.find('\0') != std::string_view::npos)
    return MakeError(ErrorKind::kMalformed, "policy answer contains NUL");
  if (!untrusted_text.empty() && untrusted_text.back() == '\n') untrusted_text.remove_suffix(1);
  auto fields = SplitFields(untrusted_text);
  if (!fields) return tl::unexpected(fields.error());
  return FromFields(*fields);
}

}  // namespace qrexec::daemon
