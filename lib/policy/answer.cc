// Turning decisions into answers (policy-language.md §4.8) and the --explain
// JSON of qrexec-policy-exec.
#include <algorithm>

#include <fmt/core.h>

#include "policy/evaluate.h"
#include "policy/evaluate_internal.h"

namespace qrexec::policy {
namespace internal {

void BuildAllowAnswer(Decision& d, const SystemInfo& info) {
  auto refuse = [&](std::string reason, bool notify) {
    Refuse(d, std::move(reason), notify);
    d.refused_by_answer = true;
  };
  auto fail = [&](const std::string& what) {
    FailClosed(d, what);
    d.refused_by_answer = true;
  };
  if (d.source == d.target) return refuse("loopback qrexec connection not supported", true);
  std::string user = d.user.value_or("DEFAULT");
  const char* autostart = d.autostart ? "True" : "False";
  std::string policy_source = d.relay ? "\npolicy_source=" + d.source : "";
  if (IsDom0Name(d.target)) {
    d.answer = fmt::format("user={}\nresult=allow\ntarget=dom0\nautostart={}\nrequested_target={}",
                           user, autostart, d.requested_target);
    return;
  }
  if (d.target.rfind("@dispvm:", 0) == 0) {
    std::string name = d.target.substr(8);
    const Domain* dom = info.Find(name);
    if (!dom) return fail("disposable template " + name + " is not in system info");
    d.answer = fmt::format(
        "user={}\nresult=allow\ntarget={}\ntarget_uuid=@dispvm:uuid:{}\nautostart={}\n"
        "requested_target={}{}",
        user, d.target, dom->uuid, autostart, d.requested_target, policy_source);
    return;
  }
  const Domain* dom = info.Find(d.target);
  if (!dom) return fail("target " + d.target + " is not in system info");
  if (dom->type == "RemoteVM") {
    if (d.user)
      d.warnings.push_back(
          "Ignoring user directive in policy. This is not supported in the case of RemoveVM.");
    if (!dom->relayvm) return refuse(d.target + ": relayvm is not set", true);
    if (!dom->transport_rpc) return refuse(d.target + ": transport RPC is not set", true);
    const Domain* relay = info.Find(*dom->relayvm);
    if (!relay) return fail("relay " + *dom->relayvm + " is not in system info");
    d.answer = fmt::format(
        "user=DEFAULT\nresult=allow\ntarget={}\ntarget_uuid=uuid:{}\nautostart={}\n"
        "requested_target={}\nservice={}+{}+{}{}{}",
        *dom->relayvm, relay->uuid, autostart, d.requested_target, *dom->transport_rpc,
        d.requested_target, d.service, d.argument, policy_source);
    return;
  }
  d.answer = fmt::format(
      "user={}\nresult=allow\ntarget={}\ntarget_uuid=uuid:{}\nautostart={}\nrequested_target={}{}",
      user, d.target, dom->uuid, autostart, d.requested_target, policy_source);
}

}  // namespace internal

namespace {

// Python json.dumps string (ensure_ascii).
std::string JsonString(std::string_view s) {
  std::string out = "\"";
  size_t i = 0;
  while (i < s.size()) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      ++i;
      switch (c) {
        case '"': out += "\\\""; break;
        case '\\': out += "\\\\"; break;
        case '\n': out += "\\n"; break;
        case '\r': out += "\\r"; break;
        case '\t': out += "\\t"; break;
        case '\b': out += "\\b"; break;
        case '\f': out += "\\f"; break;
        default:
          if (c < 0x20 || c == 0x7f)
            out += fmt::format("\\u{:04x}", c);
          else
            out += static_cast<char>(c);
      }
      continue;
    }
    size_t n = (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 1;
    if (i + n > s.size()) n = 1;
    uint32_t cp = n == 1 ? 0xfffd : n == 2 ? (c & 0x1f) : n == 3 ? (c & 0x0f) : (c & 0x07);
    for (size_t k = 1; k < n; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3f);
    i += n;
    if (cp >= 0x10000) {
      cp -= 0x10000;
      out += fmt::format("\\u{:04x}\\u{:04x}", 0xd800 + (cp >> 10), 0xdc00 + (cp & 0x3ff));
    } else {
      out += fmt::format("\\u{:04x}", cp);
    }
  }
  out += '"';
  return out;
}

std::string JsonOptString(const std::optional<std::string>& s) {
  return s ? JsonString(*s) : "null";
}

}  // namespace

Decision ResolveAsk(const Decision& ask, std::string_view chosen, const SystemInfo& info) {
  Decision d = ask;
  if (std::find(ask.targets.begin(), ask.targets.end(), chosen) == ask.targets.end()) {
    internal::Refuse(d, fmt::format("target {} is not a valid choice", chosen), true);
    return d;
  }
  d.verdict = Verdict::kAllow;
  d.target = std::string(chosen);
  d.targets.clear();
  d.default_target.reset();
  internal::BuildAllowAnswer(d, info);
  return d;
}

Decision DenyAsk(const Decision& ask) {
  Decision d = ask;
  std::string loc = ask.rule ? ask.rule->ToString() : "None:None";
  internal::Refuse(d, "denied by the user " + loc, ask.notify);
  return d;
}

Decision ApplyAgentReply(const Decision& ask, std::string_view reply, const SystemInfo& info) {
  if (reply.rfind("allow:", 0) == 0) return ResolveAsk(ask, reply.substr(6), info);
  if (reply == "deny") return DenyAsk(ask);
  Decision d = ask;
  internal::Refuse(d, "invalid response", true);
  return d;
}

Decision ApplyMode(const Decision& decision, const SystemInfo& info, bool just_evaluate,
                   bool assume_yes_for_ask) {
  Decision d = decision;
  if (d.verdict == Verdict::kAsk) {
    if (assume_yes_for_ask)
      d = ResolveAsk(d, d.requested_target, info);
    else if (just_evaluate)
      internal::Refuse(d, "denied for non-interactive ask", false);
  }
  if (just_evaluate) {
    d.notify = false;
    if (d.verdict == Verdict::kAllow || (d.verdict == Verdict::kDeny && d.refused_by_answer)) {
      d.verdict = Verdict::kAllow;
      d.reason.clear();
      d.answer = "result=allow";
    }
  }
  return d;
}

std::string ExplainJson(const Decision& d, const SystemInfo& info) {
  std::string targets = "null";
  std::optional<std::string> answer;
  if (d.verdict == Verdict::kAsk) {
    targets = "[";
    for (size_t i = 0; i < d.targets.size(); ++i)
      targets += (i ? ", " : "") + JsonString(d.targets[i]);
    targets += "]";
    if (d.default_target) answer = ResolveAsk(d, *d.default_target, info).answer;
  } else {
    answer = d.answer;
  }
  std::optional<std::string> rule;
  if (d.rule) rule = d.rule->ToString();
  std::optional<std::string> reason;
  if (d.verdict == Verdict::kDeny) reason = d.reason;
  return fmt::format(
      "{{\"result\": {}, \"rule\": {}, \"reason\": {}, \"targets\": {}, \"default_target\": {}, "
      "\"notify\": {}, \"answer\": {}}}",
      JsonString(VerdictName(d.verdict)), JsonOptString(rule), JsonOptString(reason), targets,
      JsonOptString(d.verdict == Verdict::kAsk ? d.default_target : std::nullopt),
      d.notify ? "true" : "false", JsonOptString(answer));
}

}  // namespace qrexec::policy
