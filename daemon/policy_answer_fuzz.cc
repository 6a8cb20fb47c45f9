// Fuzzes the daemon's reading of policy answers (policy.sock and fallback).
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "daemon/policy_answer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto answer = qrexec::daemon::ParsePolicyAnswer(
      std::string_view(reinterpret_cast<const char*>(data), size));
  if (answer && !answer->allow && !answer->user.empty()) __builtin_trap();
  return 0;
}
