// First-match evaluation (policy-language.md §4.1-4.7).
#include "policy/evaluate.h"

#include <algorithm>
#include <set>

#include <fmt/core.h>

#include "policy/evaluate_internal.h"

namespace qrexec::policy {
namespace {

using internal::FailClosed;
using internal::Refuse;

bool StartsWith(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

constexpr std::string_view kDispVmPrefix = "@dispvm:";

// uuid-aware equality of §4.3.
bool UuidEq(const SystemInfo& info, std::string_view a, std::string_view b) {
  bool au = StartsWith(a, "uuid:"), bu = StartsWith(b, "uuid:");
  if (au == bu) return a == b;
  if (bu) std::swap(a, b);
  const Domain* d = info.Find(b);
  return d != nullptr && a.substr(5) == d->uuid;
}

enum class Match { kNo, kYes, kCrash };

Match Bool(bool b) { return b ? Match::kYes : Match::kNo; }

Match MatchSource(const Token& t, const std::string& s, const SystemInfo& info) {
  switch (t.kind) {
    case TokenKind::kAny: return Match::kYes;
    case TokenKind::kAnyVm: return Bool(!IsDom0Name(s));
    case TokenKind::kAdminVm: return Bool(IsDom0Name(s));
    case TokenKind::kLiteral:
      return Bool(t.IsDom0() ? IsDom0Name(s) : UuidEq(info, t.text, s));
    case TokenKind::kTag: {
      const Domain* d = info.Find(s);
      return Bool(d && d->HasTag(t.value));
    }
    case TokenKind::kType: {
      const Domain* d = info.Find(s);
      return Bool(d && d->type == t.value);
    }
    default: return Match::kNo;  // @dispvm forms never match a source
  }
}

// Target column of §4.3. `r` is the normalised request target.
Match MatchTarget(const Token& t, const std::string& r, const std::string& source,
                  const SystemInfo& info, std::string* crash) {
  switch (t.kind) {
    case TokenKind::kAny: return Match::kYes;
    case TokenKind::kAnyVm: return Bool(!IsDom0Name(r));
    case TokenKind::kAdminVm: return Bool(IsDom0Name(r));
    case TokenKind::kLiteral:
      if (t.IsDom0()) return Bool(IsDom0Name(r));
      return Bool(!StartsWith(r, "@") && UuidEq(info, t.text, r));
    case TokenKind::kDefault: return Bool(r == "@default");
    case TokenKind::kTag:
    case TokenKind::kType: {
      if (StartsWith(r, "@")) return Match::kNo;
      const Domain* d = info.Find(r);
      if (!d) return Match::kNo;
      return Bool(t.kind == TokenKind::kTag ? d->HasTag(t.value) : d->type == t.value);
    }
    case TokenKind::kDispVm: return Bool(r == "@dispvm");
    case TokenKind::kDispVmTemplate:
    case TokenKind::kDispVmTag: {
      std::string name;
      if (StartsWith(r, kDispVmPrefix)) {
        name = r.substr(kDispVmPrefix.size());
        if (t.kind == TokenKind::kDispVmTemplate) return Bool(UuidEq(info, t.value, name));
      } else if (r == "@dispvm") {
        const Domain* src = info.Find(source);
        if (!src || (t.kind == TokenKind::kDispVmTemplate && !src->default_dispvm)) {
          *crash = fmt::format("rule target {} against @dispvm, but source {} has no default "
                               "disposable template",
                               t.text, source);
          return Match::kCrash;
        }
        if (!src->default_dispvm) return Match::kNo;
        if (t.kind == TokenKind::kDispVmTemplate) return Bool(t.value == *src->default_dispvm);
        name = *src->default_dispvm;
      } else {
        return Match::kNo;
      }
      const Domain* d = info.Find(name);
      return Bool(d && d->template_for_dispvms && d->HasTag(t.value));
    }
  }
  return Match::kNo;
}

// IntendedTarget.verify of §4.1, also used on allow redirects (§4.6 step 1).
struct Normalized {
  enum { kOk, kDenied, kSyntax } status = kOk;
  std::string value;    // kOk
  std::string message;  // otherwise
};

Normalized NormalizeTarget(std::string_view text, const SystemInfo& info,
                           std::vector<std::string>& warnings) {
  if (text.empty()) return {Normalized::kOk, "@default", ""};
  auto token = ParseToken(text, TokenContext::kIntendedTarget);
  if (!token) return {Normalized::kSyntax, "", "<unknown>:0: " + token.error().message};
  switch (token->kind) {
    case TokenKind::kLiteral:
      if (info.Contains(text)) return {Normalized::kOk, std::string(text), ""};
      warnings.push_back(
          fmt::format("qrexec: target {} does not exist, using @default instead",
                      fmt::format("'{}'", text)));
      return {Normalized::kOk, "@default", ""};
    case TokenKind::kDispVmTemplate: {
      const Domain* d = info.Find(token->value);
      if (d && d->template_for_dispvms) return {Normalized::kOk, std::string(text), ""};
      return {Normalized::kDenied, "", "not a template for dispvm: " + token->value};
    }
    default: return {Normalized::kOk, std::string(text), ""};
  }
}

// Expansion of one token for the ask list (§4.7 table), as qube names.
// Returns false (crash) for @dispvm:<unknown>.
bool Expand(const Token& t, const SystemInfo& info, std::set<std::string>& out) {
  auto all = [&](bool with_dom0) {
    for (const Domain& d : info.domains()) {
      if (!with_dom0 && d.name == "dom0") continue;
      out.insert(d.name);
      if (d.template_for_dispvms) out.insert("@dispvm:" + d.name);
    }
    out.insert("@dispvm");
  };
  switch (t.kind) {
    case TokenKind::kLiteral:
      if (const Domain* d = info.Find(t.text)) out.insert(d->name);
      return true;
    case TokenKind::kAny: all(true); return true;
    case TokenKind::kAnyVm: all(false); return true;
    case TokenKind::kAdminVm: out.insert("@adminvm"); return true;
    case TokenKind::kDefault: return true;
    case TokenKind::kDispVm: out.insert("@dispvm"); return true;
    case TokenKind::kType:
    case TokenKind::kTag:
      for (const Domain& d : info.domains())
        if (t.kind == TokenKind::kTag ? d.HasTag(t.value) : d.type == t.value) out.insert(d.name);
      return true;
    case TokenKind::kDispVmTemplate: {
      const Domain* d = info.Find(t.value);
      if (!d) return false;
      if (d->template_for_dispvms) out.insert("@dispvm:" + d->name);
      return true;
    }
    case TokenKind::kDispVmTag:
      for (const Domain& d : info.domains())
        if (d.template_for_dispvms && d.HasTag(t.value)) out.insert("@dispvm:" + d.name);
      return true;
  }
  return true;
}

class Evaluator {
 public:
  Evaluator(const Policy& policy, const SystemInfo& info, MatchPath path)
      : policy_(policy), info_(info), path_(path) {}

  void Run(const Request& req, Decision& d) {
    d.service = req.service;
    d.argument = req.argument;
    d.source = req.source;
    d.raw_target = req.target;
    d.answer = "result=deny";
    if (d.argument.empty() || d.argument[0] != '+')
      return Refuse(d, "argument " + d.argument + " does not start with +", false);
    Normalized n = NormalizeTarget(req.target, info_, d.warnings);
    if (n.status != Normalized::kOk)
      return Refuse(d, n.message, n.status == Normalized::kDenied);
    d.requested_target = n.value;
    if (!req.requested_source.empty()) {
      const std::string& rs = req.requested_source;
      const Domain* remote = info_.Find(rs);
      if (!remote) return Refuse(d, fmt::format("unknown requested source qube '{}'", rs), true);
      if (remote->type != "RemoteVM")
        return Refuse(d, rs + ": requested source is only authorized for RemoteVM", true);
      if (!remote->relayvm || *remote->relayvm != req.source)
        return Refuse(d, req.source + " is not a relay for " + rs, true);
      d.relay = req.source;
      d.source = rs;
    }

    const Rule* found = nullptr;
    std::string crash;
    policy_.ForEachServiceMatch(d.service, d.argument, path_, [&](const Rule& rule) {
      if (MatchSource(rule.source, d.source, info_) != Match::kYes) return false;
      Match m = MatchTarget(rule.target, d.requested_target, d.source, info_, &crash);
      if (m == Match::kNo) return false;
      if (m == Match::kYes) found = &rule;
      return true;
    });
    if (!crash.empty()) return FailClosed(d, crash);
    if (!found) return Refuse(d, "no matching rule found", true);
    d.rule = found->location;
    switch (found->action) {
      case Action::kDeny:
        return Refuse(d, "denied by policy " + found->location.ToString(), found->notify);
      case Action::kAllow: return Allow(*found, d);
      case Action::kAsk: return Ask(*found, d);
    }
  }

 private:
  void Allow(const Rule& rule, Decision& d) {
    std::string loc = rule.location.ToString();
    std::string candidate = rule.redirect ? rule.redirect->text : d.requested_target;
    Normalized n = NormalizeTarget(candidate, info_, d.warnings);
    if (n.status != Normalized::kOk) return Refuse(d, n.message, true);
    std::string t = n.value;
    if (t == "@default")
      return Refuse(d,
                    fmt::format("policy define 'allow' action at {} but no target is specified "
                                "by caller or policy",
                                loc),
                    true);
    if (t == "@dispvm") {
      const Domain* src = info_.Find(d.source);
      if (!src) return FailClosed(d, "source " + d.source + " is not in system info");
      if (!src->default_dispvm)
        return Refuse(d,
                      fmt::format("policy define 'allow' action to @dispvm at {} but no DispVM "
                                  "base is set for this VM",
                                  loc),
                      true);
      t = "@dispvm:" + *src->default_dispvm;
    }
    if (t == "@adminvm") t = "dom0";
    if (!rule.autostart && !internal::AutostartAllowed(info_, t))
      return Refuse(d, fmt::format("target {} is denied because it would require autostart", t),
                    rule.notify);
    d.verdict = Verdict::kAllow;
    d.target = t;
    d.user = rule.user;
    d.autostart = rule.autostart;
    d.notify = rule.notify;
    internal::BuildAllowAnswer(d, info_);
  }

  void Ask(const Rule& rule, Decision& d) {
    std::string loc = rule.location.ToString();
    // The reference looks the source up for the collection and for a
    // @dispvm default; an unknown source crashes it there (fail closed).
    const Domain* src = info_.Find(d.source);
    auto unknown_source = [&] {
      FailClosed(d, "ask from source " + d.source + ", which is not in system info");
    };
    std::set<std::string> targets;
    if (rule.redirect) {
      targets.insert(rule.redirect->IsDom0() ? "dom0" : rule.redirect->text);
    } else {
      if (!src) return unknown_source();
      std::vector<const Rule*> related;
      policy_.ForEachServiceMatch(d.service, d.argument, path_, [&](const Rule& r) {
        if (MatchSource(r.source, d.source, info_) == Match::kYes) related.push_back(&r);
        return false;
      });
      for (auto it = related.rbegin(); it != related.rend(); ++it) {
        const Rule& r = **it;
        std::set<std::string> expansion;
        if (!Expand(r.redirect ? *r.redirect : r.target, info_, expansion))
          return FailClosed(d, "ask collection met " + (r.redirect ? *r.redirect : r.target).text +
                                   " at " + r.location.ToString() + ", which is not in system info");
        for (const std::string& e : expansion) {
          if (r.action == Action::kDeny)
            targets.erase(e);
          else
            targets.insert(e);
        }
      }
      if (targets.erase("@dispvm") && src->default_dispvm)
        targets.insert("@dispvm:" + *src->default_dispvm);
      if (targets.erase("@adminvm")) targets.insert("dom0");
      targets.erase(src->name);
      targets.erase("uuid:" + src->uuid);
      for (auto it = targets.begin(); it != targets.end();) {
        std::string_view name = *it;
        if (StartsWith(name, kDispVmPrefix)) name.remove_prefix(kDispVmPrefix.size());
        const Domain* dom = info_.Find(name);
        if (!dom) return FailClosed(d, "ask target " + *it + " is not in system info");
        it = dom->internal ? targets.erase(it) : std::next(it);
      }
    }
    if (!rule.autostart) {
      for (auto it = targets.begin(); it != targets.end();)
        it = internal::AutostartAllowed(info_, *it) ? std::next(it) : targets.erase(it);
    }
    if (targets.empty())
      return Refuse(d,
                    fmt::format("policy define 'ask' action at {} but no target is available to "
                                "choose from",
                                loc),
                    true);
    std::optional<std::string> def;
    if (rule.default_target) {
      const std::string& v = rule.default_target->text;
      if (v == "@dispvm") {
        if (!src) return unknown_source();
        if (src->default_dispvm) def = "@dispvm:" + *src->default_dispvm;
      } else if (IsDom0Name(v)) {
        def = "dom0";
      } else {
        def = v;
      }
      if (def && !targets.count(*def)) {
        std::string list;
        for (const std::string& t : targets) list += (list.empty() ? "" : ", ") + t;
        d.warnings.push_back(fmt::format("warning: policy define default_target={} at {} but it "
                                         "is not among allowed targets ({})",
                                         *def, loc, list));
        def.reset();
      }
    }
    d.verdict = Verdict::kAsk;
    d.targets.assign(targets.begin(), targets.end());
    d.default_target = def;
    d.user = rule.user;
    d.autostart = rule.autostart;
    d.notify = rule.notify;
    d.answer.clear();
  }

  const Policy& policy_;
  const SystemInfo& info_;
  MatchPath path_;
};

}  // namespace

namespace internal {

void Refuse(Decision& d, std::string reason, bool notify) {
  d.verdict = Verdict::kDeny;
  d.reason = std::move(reason);
  d.notify = notify;
  d.answer = "result=deny";
  d.target.clear();
  d.targets.clear();
  d.default_target.reset();
}

void FailClosed(Decision& d, const std::string& what) {
  Refuse(d, "internal error, refused: " + what, false);
  d.internal_failure = true;
}

bool AutostartAllowed(const SystemInfo& info, const std::string& target) {
  if (IsDom0Name(target)) return true;
  if (StartsWith(target, "@dispvm")) return false;
  const Domain* d = info.Find(target);
  return d != nullptr && d->IsRunning();
}

}  // namespace internal

std::pair<std::string, std::string> SplitServiceAndArgument(std::string_view service_and_arg) {
  size_t plus = service_and_arg.find('+');
  if (plus == std::string_view::npos) return {std::string(service_and_arg), "+"};
  return {std::string(service_and_arg.substr(0, plus)), std::string(service_and_arg.substr(plus))};
}

Request MakeRequest(std::string_view source, std::string_view target,
                    std::string_view service_and_arg, std::string_view requested_source) {
  auto [service, argument] = SplitServiceAndArgument(service_and_arg);
  return Request{std::move(service), std::move(argument), std::string(source),
                 std::string(target), std::string(requested_source)};
}

const char* VerdictName(Verdict verdict) {
  switch (verdict) {
    case Verdict::kAllow: return "allow";
    case Verdict::kDeny: return "deny";
    case Verdict::kAsk: return "ask";
  }
  return "?";
}

Decision Evaluate(const Policy& policy, const SystemInfo& info, const Request& request,
                  MatchPath path) {
  Decision d;
  Evaluator(policy, info, path).Run(request, d);
  return d;
}

Decision DenyForLoadError(const Error& error, const Request& request) {
  Decision d;
  d.service = request.service;
  d.argument = request.argument;
  d.source = request.source;
  d.raw_target = request.target;
  internal::Refuse(d, error.message, error.kind == ErrorKind::kRefused);
  return d;
}

}  // namespace qrexec::policy
