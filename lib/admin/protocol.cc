#include "admin/protocol.h"

#include <vector>

namespace qrexec::admin {
namespace {

bool IsTokenChar(char c, bool allow_colon_at) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  if (c == '_' || c == '.' || c == '-') return true;
  if (allow_colon_at && (c == ':' || c == '@' || c == '+')) return true;
  return false;
}

bool IsValidToken(std::string_view token, bool allow_colon_at) {
  if (token.empty() || token.size() > kMaxTokenLen) return false;
  for (char c : token)
    if (!IsTokenChar(c, allow_colon_at)) return false;
  return true;
}

std::vector<std::string_view> SplitSpaces(std::string_view text) {
  std::vector<std::string_view> parts;
  size_t start = 0;
  while (true) {
    size_t space = text.find(' ', start);
    parts.push_back(text.substr(start, space == std::string_view::npos ? space : space - start));
    if (space == std::string_view::npos) break;
    start = space + 1;
  }
  return parts;
}

}  // namespace

std::string EncodeRequest(const Request& request) {
  std::string out = request.method;
  if (request.plus || !request.argument.empty()) out += "+" + request.argument;
  out += " " + request.source;
  out += request.dest_type == DestType::kKeyword ? " keyword " : " name ";
  out += request.dest;
  out.push_back('\0');
  out += request.payload;
  return out;
}

Result<Request> DecodeRequest(std::string_view untrusted_request) {
  if (untrusted_request.size() > kMaxRequestSize)
    return MakeError(ErrorKind::kOverloaded, "request too long");
  size_t nul = untrusted_request.find('\0');
  if (nul == std::string_view::npos) return MakeError(ErrorKind::kMalformed, "no NUL after the header");
  auto parts = SplitSpaces(untrusted_request.substr(0, nul));
  if (parts.size() != 4) return MakeError(ErrorKind::kMalformed, "header needs 4 space-separated fields");
  Request request;
  std::string_view method = parts[0];
  size_t plus = method.find('+');
  if (plus != std::string_view::npos) {
    request.argument = std::string(method.substr(plus + 1));
    method = method.substr(0, plus);
    request.plus = true;
    if (!request.argument.empty() && !IsValidToken(request.argument, false))
      return MakeError(ErrorKind::kMalformed, "bad method argument");
  }
  if (!IsValidToken(method, false)) return MakeError(ErrorKind::kMalformed, "bad method name");
  if (!IsValidToken(parts[1], false)) return MakeError(ErrorKind::kMalformed, "bad source");
  if (parts[2] == "name") {
    request.dest_type = DestType::kName;
  } else if (parts[2] == "keyword") {
    request.dest_type = DestType::kKeyword;
  } else {
    return MakeError(ErrorKind::kMalformed, "destination type is neither name nor keyword");
  }
  if (!IsValidToken(parts[3], true)) return MakeError(ErrorKind::kMalformed, "bad destination");
  request.method = std::string(method);
  request.source = std::string(parts[1]);
  request.dest = std::string(parts[3]);
  request.payload = std::string(untrusted_request.substr(nul + 1));
  return request;
}

std::string EncodeReply(const Reply& reply) {
  std::string out;
  if (reply.ok) {
    out = std::string("0", 1) + '\0';
    out += reply.payload;
    return out;
  }
  out = std::string("2", 1) + '\0';
  out += reply.exception_type;
  out.push_back('\0');  // traceback: never sent
  out.push_back('\0');
  out += reply.message;
  out.push_back('\0');
  return out;
}

Result<Reply> DecodeReply(std::string_view untrusted_reply) {
  if (untrusted_reply.size() > kMaxReplySize) return MakeError(ErrorKind::kOverloaded, "reply too long");
  if (untrusted_reply.size() < 2 || untrusted_reply[1] != '\0')
    return MakeError(ErrorKind::kMalformed, "reply too short or without status byte");
  if (untrusted_reply[0] == '0') return Reply::Ok(std::string(untrusted_reply.substr(2)));
  if (untrusted_reply[0] != '2') return MakeError(ErrorKind::kMalformed, "unknown reply status");
  std::string_view rest = untrusted_reply.substr(2);
  size_t end_type = rest.find('\0');
  Reply reply;
  reply.ok = false;
  reply.exception_type = std::string(rest.substr(0, end_type));
  if (reply.exception_type.empty()) return MakeError(ErrorKind::kMalformed, "exception without a type");
  if (end_type != std::string_view::npos) {
    rest = rest.substr(end_type + 1);
    size_t end_tb = rest.find('\0');
    if (end_tb != std::string_view::npos) {
      rest = rest.substr(end_tb + 1);
      size_t end_msg = rest.find('\0');
      reply.message = std::string(rest.substr(0, end_msg));
    }
  }
  return reply;
}

}  // namespace qrexec::admin
