// The policy.sock request parser (qrexec-protocol.md §5.2).
#include <gtest/gtest.h>

#include "policy/socket_request.h"

namespace qrexec::policy {
namespace {

TEST(SocketRequest, TheDaemonsRequestParses) {
  auto r = ParsePolicySocketRequest(
      "source=test-vm1\nrequested_source=\nintended_target=test-vm2\n"
      "service_and_arg=test.Service+arg\n\n");
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->source, "test-vm1");
  EXPECT_EQ(r->requested_source, "");
  EXPECT_EQ(r->intended_target, "test-vm2");
  EXPECT_EQ(r->service_and_arg, "test.Service+arg");
  EXPECT_FALSE(r->assume_yes_for_ask);
  EXPECT_FALSE(r->just_evaluate);
}

TEST(SocketRequest, EofEndsARequestAndValuesMayHoldEquals) {
  auto r = ParsePolicySocketRequest(
      "source=a=b\nintended_target=\nservice_and_arg=x\njust_evaluate=yes\nassume_yes_for_ask=no");
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->source, "a=b");
  EXPECT_EQ(r->intended_target, "");
  EXPECT_TRUE(r->just_evaluate);
  EXPECT_FALSE(r->requested_source);
}

TEST(SocketRequest, TextAfterTheEmptyLineIsIgnored) {
  auto r = ParsePolicySocketRequest("source=a\nintended_target=b\nservice_and_arg=c\n\ngarbage");
  EXPECT_TRUE(r);
  EXPECT_EQ(FindPolicyRequestEnd("source=a\n\nx"), 10u);
  EXPECT_FALSE(FindPolicyRequestEnd("source=a\n"));
}

TEST(SocketRequest, MalformedRequestsAreRejected) {
  const char* bad[] = {
      "intended_target=b\nservice_and_arg=c\n\n",                           // missing source
      "source=a\nservice_and_arg=c\n\n",                                    // missing target
      "source=a\nintended_target=b\n\n",                                    // missing service
      "source=a\nsource=a\nintended_target=b\nservice_and_arg=c\n\n",       // duplicate
      "source=a\nintended_target=b\nservice_and_arg=c\ndomain_id=1\n\n",    // unknown key
      "source=a\nintended_target=b\nservice_and_arg=c\nprocess_ident=1\n\n",
      "source=a\nintended_target=b\nservice_and_arg=c\njust_evaluate=true\n\n",
      "source=a\nintended_target=b\nservice_and_arg=c\nassume_yes_for_ask=Yes\n\n",
      "source=a\nintended_target=b\nservice_and_arg=c\njust_evaluate=no\njust_evaluate=no\n\n",
      "source=a\nrequested_source=\nrequested_source=\nintended_target=b\nservice_and_arg=c\n\n",
      "source=a\nintended_target\nservice_and_arg=c\n\n",                  // no '='
      "source=t\xc3\xa9st\nintended_target=b\nservice_and_arg=c\n\n",       // non-ASCII
      "",
  };
  for (const char* text : bad) EXPECT_FALSE(ParsePolicySocketRequest(text)) << text;
  std::string nul("source=a\0\nintended_target=b\nservice_and_arg=c\n\n", 46);
  EXPECT_FALSE(ParsePolicySocketRequest(nul));
  EXPECT_FALSE(ParsePolicySocketRequest(std::string(70000, 'a')));
}

TEST(SocketRequest, FormatRoundTrips) {
  PolicySocketRequest req{"a", "b", "svc+x", std::string("rs"), true, false};
  auto back = ParsePolicySocketRequest(FormatPolicySocketRequest(req));
  ASSERT_TRUE(back);
  EXPECT_EQ(back->requested_source, "rs");
  EXPECT_TRUE(back->assume_yes_for_ask);
  EXPECT_EQ(back->service_and_arg, "svc+x");
}

}  // namespace
}  // namespace qrexec::policy
