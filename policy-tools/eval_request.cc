#include "eval_request.h"

namespace qrexec::policy_tools {
namespace {

bool IsEvalNameChar(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '@' ||
         c == '_' || c == '-' || c == '.';
}

bool IsEvalName(std::string_view name, size_t max_len) {
  if (name.empty() || name.size() > max_len) return false;
  for (char c : name)
    if (!IsEvalNameChar(c)) return false;
  return true;
}

}  // namespace

Result<EvalRequest> DecodeEvalRequest(std::string_view expected_service,
                                      std::string_view untrusted) {
  auto nul = untrusted.find('\0');
  if (nul == std::string_view::npos) return MakeError(ErrorKind::kMalformed, "no header");
  std::string_view header = untrusted.substr(0, nul);
  std::string_view body = untrusted.substr(nul + 1);
  auto space = header.find(' ');
  std::string_view invoked = header.substr(0, space);
  std::string_view rest = space == std::string_view::npos ? "" : header.substr(space + 1);
  auto plus = invoked.find('+');
  if (invoked.substr(0, plus) != expected_service)
    return MakeError(ErrorKind::kMalformed, "wrong service name");
  if (plus == std::string_view::npos || plus + 1 == invoked.size() || invoked[plus + 1] == '+')
    return MakeError(ErrorKind::kMalformed, "missing or invalid service to evaluate");
  if (body.size() > kMaxEvalBody) return MakeError(ErrorKind::kMalformed, "body too long");
  auto body_nul = body.find('\0');
  if (body_nul == std::string_view::npos) return MakeError(ErrorKind::kMalformed, "no target");
  EvalRequest request;
  request.caller = std::string(rest.substr(0, rest.find(' ')));
  request.service_and_arg = std::string(invoked.substr(plus + 1));
  request.source = std::string(body.substr(0, body_nul));
  request.target = std::string(body.substr(body_nul + 1));
  if (!IsEvalName(request.source, 31) || !IsEvalName(request.target, 63))
    return MakeError(ErrorKind::kMalformed, "invalid source or target");
  return request;
}

}  // namespace qrexec::policy_tools
