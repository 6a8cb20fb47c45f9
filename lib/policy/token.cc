#include "policy/token.h"

#include <array>

#include <fmt/core.h>

#include "policy/text.h"

namespace qrexec::policy {
namespace {

// Table 2.4: which kinds each context accepts. Columns: Source, Target,
// Redirect, IntendedTarget.
struct KindRow {
  TokenKind kind;
  std::array<bool, 4> allowed;
};

constexpr KindRow kValidity[] = {
    {TokenKind::kLiteral, {true, true, true, true}},
    {TokenKind::kAny, {true, true, false, false}},
    {TokenKind::kAdminVm, {true, true, true, true}},
    {TokenKind::kAnyVm, {true, true, false, false}},
    {TokenKind::kDefault, {false, true, false, true}},
    {TokenKind::kDispVm, {false, true, true, true}},
    {TokenKind::kDispVmTemplate, {true, true, true, true}},
    {TokenKind::kDispVmTag, {true, true, false, false}},
    {TokenKind::kTag, {true, true, false, false}},
    {TokenKind::kType, {true, true, false, false}},
};

bool Allowed(TokenKind kind, TokenContext context) {
  for (const KindRow& row : kValidity)
    if (row.kind == kind) return row.allowed[static_cast<size_t>(context)];
  return false;
}

struct Keyword {
  const char* text;
  TokenKind kind;
};
constexpr Keyword kKeywords[] = {
    {"*", TokenKind::kAny},           {"@adminvm", TokenKind::kAdminVm},
    {"@anyvm", TokenKind::kAnyVm},    {"@default", TokenKind::kDefault},
    {"@dispvm", TokenKind::kDispVm},
};

// The order in which the reference tries the prefixes.
constexpr Keyword kPrefixes[] = {
    {"@type:", TokenKind::kType},
    {"@tag:", TokenKind::kTag},
    {"@dispvm:", TokenKind::kDispVmTemplate},
    {"@dispvm:@tag:", TokenKind::kDispVmTag},
};

}  // namespace

const char* TokenContextName(TokenContext context) {
  switch (context) {
    case TokenContext::kSource: return "source";
    case TokenContext::kTarget: return "target";
    case TokenContext::kRedirect: return "redirect";
    case TokenContext::kIntendedTarget: return "intendedtarget";
  }
  return "?";
}

bool IsDom0Name(std::string_view name) {
  return name == "@adminvm" || name == "dom0" ||
         name == "uuid:00000000-0000-0000-0000-000000000000";
}

bool Token::IsDom0() const { return IsDom0Name(text); }

Result<Token> ParseToken(std::string_view text, TokenContext context) {
  if (text.empty())
    return MakeError(ErrorKind::kMalformed,
                     fmt::format("invalid empty {} token", TokenContextName(context)));
  if (text[0] != '@' && text != "*") {
    return Token{TokenKind::kLiteral, std::string(text), std::string(text)};
  }
  for (const Keyword& keyword : kKeywords) {
    if (text == keyword.text && Allowed(keyword.kind, context))
      return Token{keyword.kind, std::string(text), std::string(text)};
  }
  for (const Keyword& prefix : kPrefixes) {
    std::string_view p = prefix.text;
    if (!Allowed(prefix.kind, context) || text.substr(0, p.size()) != p) continue;
    std::string_view value = text.substr(p.size());
    if (value.empty())
      return MakeError(ErrorKind::kMalformed,
                       fmt::format("invalid empty {} token: {}", p, text::PyRepr(text)));
    if (value[0] == '@') continue;
    return Token{prefix.kind, std::string(text), std::string(value)};
  }
  return MakeError(ErrorKind::kMalformed, fmt::format("invalid {} token: {}",
                                                      TokenContextName(context), text::PyRepr(text)));
}

}  // namespace qrexec::policy
