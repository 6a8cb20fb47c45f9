// Token grammar and the context table of policy-language.md §2.3-2.4.
#include <gtest/gtest.h>

#include "policy/text.h"
#include "policy/token.h"

namespace qrexec::policy {
namespace {

struct Row {
  const char* token;
  TokenKind kind;
  bool source, target, redirect, intended;
};

// One row per token kind (table 2.4).
const Row kRows[] = {
    {"test-vm1", TokenKind::kLiteral, true, true, true, true},
    {"dom0", TokenKind::kLiteral, true, true, true, true},
    {"uuid:c9024a97-9b15-46cc-8341-38d75d5d421b", TokenKind::kLiteral, true, true, true, true},
    {"$any", TokenKind::kLiteral, true, true, true, true},
    {"*", TokenKind::kAny, true, true, false, false},
    {"@adminvm", TokenKind::kAdminVm, true, true, true, true},
    {"@anyvm", TokenKind::kAnyVm, true, true, false, false},
    {"@default", TokenKind::kDefault, false, true, false, true},
    {"@dispvm", TokenKind::kDispVm, false, true, true, true},
    {"@dispvm:default-dvm", TokenKind::kDispVmTemplate, true, true, true, true},
    {"@dispvm:uuid:f3e538bd-4427-4697-bed7-45ef3270df21", TokenKind::kDispVmTemplate, true, true,
     true, true},
    {"@dispvm:@tag:tag1", TokenKind::kDispVmTag, true, true, false, false},
    {"@tag:tag1", TokenKind::kTag, true, true, false, false},
    {"@tag:a:b", TokenKind::kTag, true, true, false, false},
    {"@type:AppVM", TokenKind::kType, true, true, false, false},
};

TEST(Token, EachKindIsValidExactlyInTheContextsOfTheTable) {
  const TokenContext contexts[] = {TokenContext::kSource, TokenContext::kTarget,
                                   TokenContext::kRedirect, TokenContext::kIntendedTarget};
  for (const Row& row : kRows) {
    const bool expected[] = {row.source, row.target, row.redirect, row.intended};
    for (int i = 0; i < 4; ++i) {
      auto token = ParseToken(row.token, contexts[i]);
      EXPECT_EQ(token.has_value(), expected[i]) << row.token << " in " << TokenContextName(contexts[i]);
      if (token) {
        EXPECT_EQ(token->kind, row.kind) << row.token;
        EXPECT_EQ(token->text, row.token);
      } else {
        EXPECT_EQ(token.error().message, std::string("invalid ") + TokenContextName(contexts[i]) +
                                             " token: '" + row.token + "'");
      }
    }
  }
}

TEST(Token, PrefixedTokensKeepTheValueAfterThePrefix) {
  EXPECT_EQ(ParseToken("@tag:a:b", TokenContext::kTarget)->value, "a:b");
  EXPECT_EQ(ParseToken("@dispvm:@tag:x", TokenContext::kTarget)->value, "x");
  EXPECT_EQ(ParseToken("@dispvm:uuid:1", TokenContext::kTarget)->value, "uuid:1");
  EXPECT_EQ(ParseToken("@type:X", TokenContext::kSource)->value, "X");
}

TEST(Token, EmptyTokensAndEmptyPrefixValuesAreRefusedWithTheirMessages) {
  EXPECT_EQ(ParseToken("", TokenContext::kSource).error().message, "invalid empty source token");
  EXPECT_EQ(ParseToken("", TokenContext::kRedirect).error().message,
            "invalid empty redirect token");
  EXPECT_EQ(ParseToken("", TokenContext::kIntendedTarget).error().message,
            "invalid empty intendedtarget token");
  EXPECT_EQ(ParseToken("@tag:", TokenContext::kTarget).error().message,
            "invalid empty @tag: token: '@tag:'");
  EXPECT_EQ(ParseToken("@type:", TokenContext::kSource).error().message,
            "invalid empty @type: token: '@type:'");
  EXPECT_EQ(ParseToken("@dispvm:", TokenContext::kTarget).error().message,
            "invalid empty @dispvm: token: '@dispvm:'");
  EXPECT_EQ(ParseToken("@dispvm:@tag:", TokenContext::kTarget).error().message,
            "invalid empty @dispvm:@tag: token: '@dispvm:@tag:'");
}

TEST(Token, ValuesStartingWithAtAndUnknownKeywordsAreInvalid) {
  EXPECT_EQ(ParseToken("@tag:@x", TokenContext::kTarget).error().message,
            "invalid target token: '@tag:@x'");
  EXPECT_EQ(ParseToken("@dispvm:@foo", TokenContext::kTarget).error().message,
            "invalid target token: '@dispvm:@foo'");
  EXPECT_EQ(ParseToken("@uuid:c9024a97", TokenContext::kSource).error().message,
            "invalid source token: '@uuid:c9024a97'");
  EXPECT_EQ(ParseToken("@invalid", TokenContext::kIntendedTarget).error().message,
            "invalid intendedtarget token: '@invalid'");
  EXPECT_EQ(ParseToken("@dispvm:@tag:x", TokenContext::kRedirect).error().message,
            "invalid redirect token: '@dispvm:@tag:x'");
}

TEST(Token, OnlyTheThreeExactDom0SpellingsAreDom0) {
  EXPECT_TRUE(IsDom0Name("dom0"));
  EXPECT_TRUE(IsDom0Name("@adminvm"));
  EXPECT_TRUE(IsDom0Name("uuid:00000000-0000-0000-0000-000000000000"));
  EXPECT_FALSE(IsDom0Name("Dom0"));
  EXPECT_FALSE(IsDom0Name("uuid:00000000-0000-0000-0000-00000000000"));
}

TEST(Text, PythonReprQuotesAndEscapesLikePython) {
  EXPECT_EQ(text::PyRepr("abc"), "'abc'");
  EXPECT_EQ(text::PyRepr("it's"), "\"it's\"");
  EXPECT_EQ(text::PyRepr("a'b\"c"), "'a\\'b\"c'");
  EXPECT_EQ(text::PyRepr("a\\b"), "'a\\\\b'");
  EXPECT_EQ(text::PyRepr(std::string("\x01\x7f", 2)), "'\\x01\\x7f'");
  EXPECT_EQ(text::PyRepr("t\xc3\xa9st"), "'t\xc3\xa9st'");
  EXPECT_EQ(text::PyRepr("\xc2\xad"), "'\\xad'");
  EXPECT_EQ(text::PyRepr("\xe2\x80\x8b"), "'\\u200b'");
  EXPECT_EQ(text::PyReprList({"a=b", "c"}), "['a=b', 'c']");
}

TEST(Text, LinesSplitOnNewlineCarriageReturnAndBoth) {
  auto lines = text::SplitLines("a\nb\r\nc\rd");
  ASSERT_EQ(lines.size(), 4u);
  EXPECT_EQ(lines[3], "d");
  EXPECT_EQ(text::SplitLines("a\n\n").size(), 2u);
}

TEST(Text, UnicodeWhitespaceSeparatesFieldsAndIsStripped) {
  auto fields = text::SplitFields("* *\xc2\xa0@anyvm\xe3\x80\x80@anyvm \x1c allow");
  ASSERT_EQ(fields.size(), 5u);
  EXPECT_EQ(fields[2], "@anyvm");
  EXPECT_EQ(text::Strip("\xe2\x80\x83 x y\x0b"), "x y");
  EXPECT_EQ(text::SplitFields("a\xe2\x80\x8b" "b").size(), 1u);  // U+200B is not whitespace
}

TEST(Text, Utf8ValidationIsStrict) {
  EXPECT_TRUE(text::IsValidUtf8("t\xc3\xa9st \xf0\x9f\x98\x80"));
  EXPECT_FALSE(text::IsValidUtf8("\xff"));
  EXPECT_FALSE(text::IsValidUtf8("\xc0\xaf"));          // overlong
  EXPECT_FALSE(text::IsValidUtf8("\xed\xa0\x80"));      // surrogate
  EXPECT_FALSE(text::IsValidUtf8("\xf4\x90\x80\x80"));  // above U+10FFFF
  EXPECT_FALSE(text::IsValidUtf8("\xe2\x82"));          // truncated
}

}  // namespace
}  // namespace qrexec::policy
