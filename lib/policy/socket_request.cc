#include "policy/socket_request.h"

#include <fmt/core.h>

#include "base/limits.h"

namespace qrexec::policy {
namespace {

tl::unexpected<Error> Bad(std::string message) {
  return MakeError(ErrorKind::kMalformed, std::move(message));
}

// Keys are echoed into logs only after this check: printable ASCII, short.
std::string LogSafe(std::string_view key) {
  std::string out;
  for (char c : key.substr(0, 64)) out += (c >= 0x20 && c < 0x7f) ? c : '?';
  return out;
}

}  // namespace

std::optional<size_t> FindPolicyRequestEnd(std::string_view buffer) {
  if (!buffer.empty() && buffer[0] == '\n') return 1;
  size_t pos = buffer.find("\n\n");
  if (pos == std::string_view::npos) return std::nullopt;
  return pos + 2;
}

Result<PolicySocketRequest> ParsePolicySocketRequest(std::string_view untrusted_request) {
  if (untrusted_request.size() > limits::kMaxPolicyRequest) return Bad("request too long");
  if (auto end = FindPolicyRequestEnd(untrusted_request)) untrusted_request.remove_suffix(
      untrusted_request.size() - *end);
  for (char c : untrusted_request) {
    if (static_cast<unsigned char>(c) >= 0x80) return Bad("non-ASCII byte in request");
    if (c == '\0') return Bad("NUL byte in request");
  }
  PolicySocketRequest req;
  bool have_source = false, have_target = false, have_service = false;
  bool have_assume = false, have_just = false;
  size_t pos = 0;
  while (pos < untrusted_request.size()) {
    size_t nl = untrusted_request.find('\n', pos);
    std::string_view line = untrusted_request.substr(
        pos, nl == std::string_view::npos ? std::string_view::npos : nl - pos);
    pos = nl == std::string_view::npos ? untrusted_request.size() : nl + 1;
    if (line.empty()) break;  // end of request
    size_t eq = line.find('=');
    if (eq == std::string_view::npos) return Bad("line without '='");
    std::string_view key = line.substr(0, eq);
    std::string value(line.substr(eq + 1));
    auto once = [&](bool& seen) -> Status {
      if (seen) return Bad(fmt::format("duplicate key '{}'", LogSafe(key)));
      seen = true;
      return Ok();
    };
    auto boolean = [&](bool& out) -> Status {
      if (value != "yes" && value != "no")
        return Bad(fmt::format("'{}' must be 'yes' or 'no'", LogSafe(key)));
      out = value == "yes";
      return Ok();
    };
    Status status;
    if (key == "source") {
      status = once(have_source);
      req.source = value;
    } else if (key == "intended_target") {
      status = once(have_target);
      req.intended_target = value;
    } else if (key == "service_and_arg") {
      status = once(have_service);
      req.service_and_arg = value;
    } else if (key == "requested_source") {
      if (req.requested_source) return Bad("duplicate key 'requested_source'");
      req.requested_source = value;
    } else if (key == "assume_yes_for_ask") {
      status = once(have_assume);
      if (status) status = boolean(req.assume_yes_for_ask);
    } else if (key == "just_evaluate") {
      status = once(have_just);
      if (status) status = boolean(req.just_evaluate);
    } else {
      return Bad(fmt::format("unknown key '{}'", LogSafe(key)));
    }
    if (!status) return tl::unexpected(status.error());
  }
  if (!have_source) return Bad("missing key 'source'");
  if (!have_target) return Bad("missing key 'intended_target'");
  if (!have_service) return Bad("missing key 'service_and_arg'");
  return req;
}

std::string FormatPolicySocketRequest(const PolicySocketRequest& request) {
  std::string out = "source=" + request.source + "\n";
  if (request.requested_source) out += "requested_source=" + *request.requested_source + "\n";
  out += "intended_target=" + request.intended_target + "\n";
  out += "service_and_arg=" + request.service_and_arg + "\n";
  if (request.assume_yes_for_ask) out += "assume_yes_for_ask=yes\n";
  if (request.just_evaluate) out += "just_evaluate=yes\n";
  out += "\n";
  return out;
}

}  // namespace qrexec::policy
