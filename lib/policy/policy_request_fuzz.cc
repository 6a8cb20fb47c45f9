// libFuzzer target: the policy.sock request parser, then evaluation of the
// parsed request against a fixed policy.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "policy/fuzz_fixture.h"
#include "policy/socket_request.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace qrexec::policy;
  static const Policy policy = [] {
    auto parsed = ParsePolicyText(
        "test.Service +arg vm1 @dispvm allow\n"
        "* * @tag:t1 @anyvm ask default_target=dvm\n"
        "* * @anyvm @default allow target=vm1\n"
        "* * @anyvm @adminvm allow user=root autostart=no\n"
        "* * @anyvm @anyvm deny notify=no\n",
        "fuzz.policy");
    QREXEC_CHECK(parsed.has_value());
    return *parsed;
  }();
  std::string_view text(reinterpret_cast<const char*>(data), size);
  (void)FindPolicyRequestEnd(text);
  auto request = ParsePolicySocketRequest(text);
  if (!request) return 0;
  auto again = ParsePolicySocketRequest(FormatPolicySocketRequest(*request));
  QREXEC_CHECK(again && again->source == request->source &&
               again->service_and_arg == request->service_and_arg);
  Request req = MakeRequest(request->source, request->intended_target, request->service_and_arg,
                            request->requested_source.value_or(""));
  fuzz::EvaluateAll(policy, req);
  return 0;
}
