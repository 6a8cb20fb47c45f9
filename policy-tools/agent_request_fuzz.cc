// Fuzzes the policy agent's request decoding and answer handling.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "agent_prompt.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace qrexec::policy_tools;
  std::string_view input(reinterpret_cast<const char*>(data), size);
  auto request = DecodeAgentRequest(input);
  if (!request) return 0;
  if (auto ask = DecodeAsk(request->untrusted_json)) {
    (void)FormatPrompt(*ask);
    (void)InterpretAnswer(*ask, request->caller);
    (void)InterpretAnswer(*ask, "1");
  }
  if (auto notify = DecodeNotify(request->untrusted_json)) (void)FormatNotify(*notify);
  return 0;
}
