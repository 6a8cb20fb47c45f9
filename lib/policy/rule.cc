#include "policy/rule.h"

#include <map>
#include <set>

#include <fmt/core.h>

#include "policy/text.h"

namespace qrexec::policy {
namespace {

bool IsRpcNameChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '+' ||
         c == '-' || c == '.' || c == '_';
}

// Python's tuple(sorted(set(s) - allowed)) repr, or "" when nothing is bad.
std::string InvalidCharsTuple(std::string_view s, bool plus_allowed) {
  std::set<std::string> bad;  // UTF-8 sequences; sorted bytewise == code point order
  size_t i = 0;
  while (i < s.size()) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 1;
    if (i + n > s.size()) n = 1;
    std::string_view ch = s.substr(i, n);
    if (n > 1 || !IsRpcNameChar(s[i]) || (!plus_allowed && s[i] == '+')) bad.emplace(ch);
    i += n;
  }
  if (bad.empty()) return "";
  std::string out = "(";
  size_t k = 0;
  for (const std::string& ch : bad) {
    if (k++) out += ", ";
    out += text::PyRepr(ch);
  }
  if (bad.size() == 1) out += ',';
  out += ')';
  return out;
}

tl::unexpected<Error> Syntax(std::string message) {
  return MakeError(ErrorKind::kMalformed, std::move(message));
}

// Parses the ACTION word and its PARAM=VALUE fields into `rule`.
Status ParseAction(std::string_view action_word, const std::vector<std::string_view>& params,
                   Rule& rule) {
  if (action_word == "allow")
    rule.action = Action::kAllow;
  else if (action_word == "deny")
    rule.action = Action::kDeny;
  else if (action_word == "ask")
    rule.action = Action::kAsk;
  else
    return Syntax(fmt::format("invalid action: {}", action_word));

  std::map<std::string_view, std::string_view> kv;
  std::vector<std::string_view> order;
  for (std::string_view param : params) {
    size_t eq = param.find('=');
    if (eq == std::string_view::npos)
      return Syntax(fmt::format("invalid action parameter syntax: {}", text::PyRepr(param)));
    std::string_view key = param.substr(0, eq);
    if (kv.count(key)) return Syntax(fmt::format("parameter given twice: {}", text::PyRepr(key)));
    kv[key] = param.substr(eq + 1);
    order.push_back(key);
  }
  rule.notify = rule.action == Action::kDeny;
  rule.autostart = true;
  for (const char* flag : {"notify", "autostart"}) {
    auto it = kv.find(flag);
    if (it == kv.end()) continue;
    if (it->second != "yes" && it->second != "no")
      return Syntax(fmt::format("{} is {}, but can be only 'yes' or 'no'", text::PyRepr(flag),
                                text::PyRepr(it->second)));
  }
  // Which keys each action takes (§3.2).
  auto accepted = [&](std::string_view key) {
    if (key == "notify") return true;
    if (rule.action == Action::kDeny) return false;
    if (key == "target" || key == "user" || key == "autostart") return true;
    return key == "default_target" && rule.action == Action::kAsk;
  };
  for (std::string_view key : order) {
    if (!accepted(key)) {
      const char* cls = rule.action == Action::kAllow ? "Allow"
                        : rule.action == Action::kAsk ? "Ask"
                                                      : "Deny";
      return Syntax(fmt::format("invalid parameters for action {}: {}", cls,
                                text::PyReprList(params)));
    }
  }
  if (auto it = kv.find("notify"); it != kv.end()) rule.notify = it->second == "yes";
  if (auto it = kv.find("autostart"); it != kv.end()) rule.autostart = it->second == "yes";
  if (auto it = kv.find("user"); it != kv.end() && !it->second.empty())
    rule.user = std::string(it->second);
  if (auto it = kv.find("target"); it != kv.end()) {
    auto token = ParseToken(it->second, TokenContext::kRedirect);
    if (!token) return tl::unexpected(token.error());
    rule.redirect = std::move(*token);
  }
  if (auto it = kv.find("default_target"); it != kv.end()) {
    auto token = ParseToken(it->second, TokenContext::kRedirect);
    if (!token) return tl::unexpected(token.error());
    rule.default_target = std::move(*token);
  }
  return Ok();
}

Result<Rule> BuildRule(std::optional<std::string> service, std::optional<std::string> argument,
                       std::string_view source, std::string_view target,
                       std::string_view action, const std::vector<std::string_view>& params,
                       const RuleLocation& location) {
  Rule rule;
  rule.service = std::move(service);
  rule.argument = std::move(argument);
  rule.location = location;
  auto src = ParseToken(source, TokenContext::kSource);
  if (!src) return tl::unexpected(src.error());
  rule.source = std::move(*src);
  auto dst = ParseToken(target, TokenContext::kTarget);
  if (!dst) return tl::unexpected(dst.error());
  rule.target = std::move(*dst);
  if (auto status = ParseAction(action, params, rule); !status)
    return tl::unexpected(status.error());
  if (rule.target.kind == TokenKind::kDefault && rule.action == Action::kAllow && !rule.redirect)
    return Syntax("allow action for @default rule must specify target= option");
  return rule;
}

}  // namespace

std::string RuleLocation::ToString() const {
  return line ? fmt::format("{}:{}", file, *line) : fmt::format("{}:None", file);
}

const char* ActionName(Action action) {
  switch (action) {
    case Action::kAllow: return "allow";
    case Action::kDeny: return "deny";
    case Action::kAsk: return "ask";
  }
  return "?";
}

std::string Rule::ToString() const {
  std::string act = ActionName(action);
  if (action != Action::kDeny) {
    if (redirect) act += " target=" + redirect->text;
    if (default_target) act += " default_target=" + default_target->text;
    if (user) act += " user=" + *user;
  }
  return fmt::format("{}\t{}\t{}\t{}\t{}", service ? *service : "None",
                     argument ? *argument : "*", source.text, target.text, act);
}

std::string SyntaxError::Message() const {
  return line ? fmt::format("{}:{}: {}", file, *line, message)
              : fmt::format("{}:None: {}", file, message);
}

Result<void> ValidateServiceAndArgument(std::string_view service, std::string_view argument,
                                        std::optional<std::string>* service_out,
                                        std::optional<std::string>* argument_out) {
  std::optional<std::string> svc, arg;
  if (service != "*") {
    std::string bad = InvalidCharsTuple(service, /*plus_allowed=*/false);
    if (!bad.empty())
      return Syntax(fmt::format("service {} contains invalid characters: {}",
                                text::PyRepr(service), bad));
    svc = std::string(service);
  }
  if (argument != "*") {
    std::string bad = InvalidCharsTuple(argument, /*plus_allowed=*/true);
    if (!bad.empty())
      return Syntax(fmt::format("argument {} contains invalid characters: {}",
                                text::PyRepr(argument), bad));
    if (argument.empty() || argument[0] != '+')
      return Syntax(fmt::format("argument {} does not start with +", text::PyRepr(argument)));
    arg = std::string(argument);
  }
  if (!svc && arg) return Syntax("only * argument allowed for * service");
  *service_out = std::move(svc);
  *argument_out = std::move(arg);
  return Ok();
}

Result<Rule> ParseRuleFields(const std::vector<std::string_view>& fields,
                             const RuleLocation& location) {
  if (fields.size() < 5) return Syntax("wrong number of fields");
  std::optional<std::string> service, argument;
  if (auto status = ValidateServiceAndArgument(fields[0], fields[1], &service, &argument); !status)
    return tl::unexpected(status.error());
  std::vector<std::string_view> params(fields.begin() + 5, fields.end());
  return BuildRule(std::move(service), std::move(argument), fields[2], fields[3], fields[4], params,
                   location);
}

Result<Rule> ParseServiceRuleFields(const std::vector<std::string_view>& fields,
                                    const std::optional<std::string>& service,
                                    const std::optional<std::string>& argument,
                                    const RuleLocation& location) {
  if (fields.size() < 3) return Syntax("wrong number of fields");
  std::vector<std::string_view> params(fields.begin() + 3, fields.end());
  return BuildRule(service, argument, fields[0], fields[1], fields[2], params, location);
}

}  // namespace qrexec::policy
