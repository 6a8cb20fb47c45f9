// Qube tokens of the policy language (policy-language.md §2.3-2.4).
//
// A token is parsed for one of four contexts. The kinds are a closed enum and
// the context-validity table is data (token.cc), not a class hierarchy.
#pragma once

#include <string>
#include <string_view>

#include "base/result.h"

namespace qrexec::policy {

enum class TokenContext {
  kSource,          // column 3
  kTarget,          // column 4
  kRedirect,        // target= and default_target= values
  kIntendedTarget,  // what a caller asked for
};

// "source", "target", "redirect", "intendedtarget" (as used in messages).
const char* TokenContextName(TokenContext context);

enum class TokenKind {
  kLiteral,         // a qube name, "dom0", "uuid:<UUID>" (no character checks)
  kAny,             // *
  kAdminVm,         // @adminvm
  kAnyVm,           // @anyvm
  kDefault,         // @default
  kDispVm,          // @dispvm
  kType,            // @type:X          (value = X)
  kTag,             // @tag:X           (value = X)
  kDispVmTemplate,  // @dispvm:NAME     (value = NAME, may be "uuid:<UUID>")
  kDispVmTag,       // @dispvm:@tag:X   (value = X)
};

struct Token {
  TokenKind kind = TokenKind::kLiteral;
  std::string text;   // the whole token as written
  std::string value;  // the part after the prefix (prefixed kinds), else == text

  // True for the three dom0 spellings: "@adminvm", "dom0",
  // "uuid:00000000-0000-0000-0000-000000000000" (exact, lower case).
  bool IsDom0() const;
};

// True for the three dom0 spellings (same rule as Token::IsDom0).
bool IsDom0Name(std::string_view name);

// Parses `text` for `context`. The error (kind kMalformed) carries the bare
// message of §2.3 without a file prefix, e.g. "invalid source token: '@dispvm'",
// "invalid empty target token", "invalid empty @tag: token: '@tag:'".
Result<Token> ParseToken(std::string_view text, TokenContext context);

}  // namespace qrexec::policy
