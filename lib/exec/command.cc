#include "exec/command.h"

#include <string>
#include <utility>
#include <vector>

#include "base/limits.h"

namespace qrexec::exec {
namespace {

constexpr std::string_view kRpcKeyword = "QUBESRPC";
constexpr std::string_view kNoguiPrefix = "nogui:";

tl::unexpected<Error> Bad(std::string message) {
  return MakeError(ErrorKind::kMalformed, std::move(message));
}

// Splits on single spaces; consecutive/trailing spaces produce empty tokens.
std::vector<std::string_view> SplitSpaces(std::string_view text) {
  std::vector<std::string_view> tokens;
  size_t start = 0;
  while (true) {
    size_t space = text.find(' ', start);
    if (space == std::string_view::npos) {
      tokens.push_back(text.substr(start));
      return tokens;
    }
    tokens.push_back(text.substr(start, space - start));
    start = space + 1;
    if (tokens.size() > 4) return tokens;  // already too many; stop early
  }
}

Result<RpcCall> ParseRpcText(std::string_view rpc_text) {
  std::vector<std::string_view> tokens = SplitSpaces(rpc_text);
  std::string_view descriptor = tokens[0];
  if (descriptor.empty()) return Bad("empty service descriptor");
  if (descriptor.size() > limits::kMaxServiceNameLen)
    return Bad("service descriptor too long");
  if (descriptor.find('/') != std::string_view::npos)
    return Bad("service descriptor contains '/'");

  RpcCall call;
  size_t plus = descriptor.find('+');
  std::string_view name = descriptor.substr(0, plus);
  if (name.empty()) return Bad("empty service name");
  if (name.size() > limits::kMaxServiceNamePartLen) return Bad("service name too long");
  if (name == "." || name == "..") return Bad("invalid service name");

  if (tokens.size() != 2 && tokens.size() != 4)
    return Bad("expected 2 or 4 tokens after QUBESRPC");
  for (std::string_view token : tokens)
    if (token.empty()) return Bad("empty token after QUBESRPC");

  call.rpc_text = std::string(rpc_text);
  call.descriptor = std::string(descriptor);
  call.service_name = std::string(name);
  if (plus != std::string_view::npos) call.argument = std::string(descriptor.substr(plus + 1));
  call.source = std::string(tokens[1]);
  if (tokens.size() == 4) {
    if (tokens[2] == "name") {
      call.target_type = TargetType::kName;
    } else if (tokens[2] == "keyword") {
      call.target_type = TargetType::kKeyword;
    } else {
      return Bad("requested target type must be 'name' or 'keyword'");
    }
    call.target = std::string(tokens[3]);
  }
  return call;
}

}  // namespace

Result<Command> ParseCommand(std::string_view untrusted_command, UserPrefix user_prefix) {
  if (untrusted_command.find('\0') != std::string_view::npos)
    return Bad("command contains a NUL byte");

  Command command;
  std::string_view rest = untrusted_command;
  if (user_prefix == UserPrefix::kPresent) {
    size_t colon = rest.find(':');
    if (colon == std::string_view::npos) return Bad("command has no user prefix");
    if (colon == 0) return Bad("empty user name");
    command.user = std::string(rest.substr(0, colon));
    rest.remove_prefix(colon + 1);
  }
  if (rest.starts_with(kNoguiPrefix)) {
    command.nogui = true;
    rest.remove_prefix(kNoguiPrefix.size());
  }
  command.body = std::string(rest);

  if (rest.starts_with(kRpcKeyword)) {
    rest.remove_prefix(kRpcKeyword.size());
    if (rest.empty() || rest[0] != ' ')
      return Bad("QUBESRPC must be followed by one space");
    rest.remove_prefix(1);
    if (!rest.empty() && rest[0] == ' ') return Bad("QUBESRPC followed by more than one space");
    auto call = ParseRpcText(rest);
    if (!call) return tl::unexpected(call.error());
    command.rpc = std::move(*call);
    return command;
  }

  if (rest.empty()) return Bad("empty command");
  command.shell_command = std::string(rest);
  return command;
}

std::string SubstituteDefaultUser(std::string_view command, std::string_view default_user) {
  constexpr std::string_view kDefault = "DEFAULT:";
  if (!command.starts_with(kDefault)) return std::string(command);
  std::string out(default_user);
  out += ':';
  out += command.substr(kDefault.size());
  return out;
}

std::string FormatRpcCommand(std::string_view user, std::string_view descriptor,
                             std::string_view source) {
  std::string out;
  if (!user.empty()) {
    out += user;
    out += ':';
  }
  out += kRpcKeyword;
  out += ' ';
  out += descriptor;
  out += ' ';
  out += source;
  return out;
}

}  // namespace qrexec::exec
