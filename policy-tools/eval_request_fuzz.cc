// Fuzzes the policy.EvalSimple / policy.EvalGUI request decoder.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "base/check.h"
#include "eval_request.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  for (std::string_view service : {"policy.EvalSimple", "policy.EvalGUI"}) {
    auto request = qrexec::policy_tools::DecodeEvalRequest(service, input);
    if (!request) continue;
    QREXEC_CHECK(!request->source.empty() && request->source.size() <= 31);
    QREXEC_CHECK(!request->target.empty() && request->target.size() <= 63);
    QREXEC_CHECK(!request->service_and_arg.empty() && request->service_and_arg[0] != '+');
  }
  return 0;
}
