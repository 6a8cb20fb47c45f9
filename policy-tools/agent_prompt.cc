#include "agent_prompt.h"

#include <fmt/core.h>

#include <algorithm>
#include <nlohmann/json.hpp>

#include "base/escape_filter.h"

namespace qrexec::policy_tools {
namespace {

using nlohmann::json;

constexpr std::string_view kDispvmPrefix = "@dispvm:";

Result<json> ParseObject(std::string_view untrusted_json) {
  json value = json::parse(untrusted_json.begin(), untrusted_json.end(), nullptr,
                           /*allow_exceptions=*/false);
  if (value.is_discarded() || !value.is_object())
    return MakeError(ErrorKind::kMalformed, "request body is not a JSON object");
  return value;
}

Status GetString(const json& object, const char* key, std::string& out) {
  auto it = object.find(key);
  if (it == object.end() || !it->is_string())
    return MakeError(ErrorKind::kMalformed, fmt::format("missing or non-string '{}'", key));
  out = it->get<std::string>();
  return Ok();
}

std::string Trim(std::string_view text) {
  auto first = text.find_first_not_of(" \t\r\n");
  if (first == std::string_view::npos) return {};
  auto last = text.find_last_not_of(" \t\r\n");
  return std::string(text.substr(first, last - first + 1));
}

}  // namespace

Result<AgentRequest> DecodeAgentRequest(std::string_view untrusted_bytes) {
  auto nul = untrusted_bytes.find('\0');
  if (nul == std::string_view::npos)
    return MakeError(ErrorKind::kMalformed, "no NUL after the request header");
  std::string_view header = untrusted_bytes.substr(0, nul);
  AgentRequest request;
  auto space = header.find(' ');
  std::string_view service = header.substr(0, space);
  service = service.substr(0, service.find('+'));
  request.service = std::string(service);
  if (space != std::string_view::npos) {
    std::string_view rest = header.substr(space + 1);
    request.caller = std::string(rest.substr(0, rest.find(' ')));
  }
  request.untrusted_json = std::string(untrusted_bytes.substr(nul + 1));
  return request;
}

Result<AskRequest> DecodeAsk(std::string_view untrusted_json) {
  auto object = ParseObject(untrusted_json);
  if (!object) return tl::unexpected(object.error());
  AskRequest ask;
  for (auto [key, out] : {std::pair{"source", &ask.source},
                          {"service", &ask.service},
                          {"argument", &ask.argument},
                          {"default_target", &ask.default_target}}) {
    if (auto status = GetString(*object, key, *out); !status) return tl::unexpected(status.error());
  }
  auto targets = object->find("targets");
  if (targets == object->end() || !targets->is_array() || targets->empty())
    return MakeError(ErrorKind::kMalformed, "'targets' must be a non-empty list");
  for (const auto& target : *targets) {
    if (!target.is_string()) return MakeError(ErrorKind::kMalformed, "non-string target");
    ask.targets.push_back(target.get<std::string>());
  }
  if (auto icons = object->find("icons"); icons != object->end() && icons->is_object()) {
    for (const auto& [name, icon] : icons->items())
      if (icon.is_string()) ask.icons.emplace(name, icon.get<std::string>());
  }
  return ask;
}

Result<NotifyRequest> DecodeNotify(std::string_view untrusted_json) {
  auto object = ParseObject(untrusted_json);
  if (!object) return tl::unexpected(object.error());
  NotifyRequest notify;
  for (auto [key, out] : {std::pair{"resolution", &notify.resolution},
                          {"service", &notify.service},
                          {"argument", &notify.argument},
                          {"source", &notify.source},
                          {"target", &notify.target}}) {
    if (auto status = GetString(*object, key, *out); !status) return tl::unexpected(status.error());
  }
  return notify;
}

std::string DisplayName(std::string_view target) {
  if (target.starts_with(kDispvmPrefix))
    return fmt::format("Disposable VM ({})", target.substr(kDispvmPrefix.size()));
  return std::string(target);
}

std::vector<std::string> PromptOrder(const AskRequest& ask) {
  std::vector<std::string> order = ask.targets;
  std::stable_sort(order.begin(), order.end(), [](const std::string& a, const std::string& b) {
    return DisplayName(a) < DisplayName(b);
  });
  order.erase(std::unique(order.begin(), order.end()), order.end());
  return order;
}

std::string FormatPrompt(const AskRequest& ask) {
  std::string text = fmt::format("Qube '{}' asks to call '{}' with argument '{}'.\n", ask.source,
                                 ask.service, ask.argument);
  text += "Allowed targets:\n";
  auto order = PromptOrder(ask);
  for (size_t i = 0; i < order.size(); ++i) {
    bool is_default = order[i] == ask.default_target;
    text +=
        fmt::format("  {}) {}{}\n", i + 1, DisplayName(order[i]), is_default ? " [default]" : "");
  }
  if (ask.default_target.empty())
    text += fmt::format("Choose a number (1-{}) or a name, or 'n' to deny: ", order.size());
  else
    text += fmt::format("Choose a number (1-{}) or a name, Enter for '{}', or 'n' to deny: ",
                        order.size(), ask.default_target);
  return SanitizeForLog(text);
}

std::optional<std::string> InterpretAnswer(const AskRequest& ask, std::string_view line) {
  std::string answer = Trim(line);
  if (answer == "n" || answer == "no" || answer == "deny") return "deny";
  if (answer.empty()) {
    if (ask.default_target.empty()) return std::nullopt;
    return "allow:" + ask.default_target;
  }
  auto order = PromptOrder(ask);
  if (std::all_of(answer.begin(), answer.end(), [](char c) { return c >= '0' && c <= '9'; }) &&
      answer.size() < 6) {
    size_t index = std::stoul(answer);
    if (index >= 1 && index <= order.size()) return "allow:" + order[index - 1];
    return std::nullopt;
  }
  for (const auto& target : order)
    if (target == answer || DisplayName(target) == answer) return "allow:" + target;
  return std::nullopt;
}

std::string FormatNotify(const NotifyRequest& notify) {
  return SanitizeForLog(fmt::format("policy.Notify: {} {}{} from {} to {}", notify.resolution,
                                    notify.service, notify.argument, notify.source,
                                    notify.target)) +
         "\n";
}

}  // namespace qrexec::policy_tools
