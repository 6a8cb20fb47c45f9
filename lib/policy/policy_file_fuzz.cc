// libFuzzer target: the policy file parser (one in-memory new-format file),
// then a few evaluations against the parsed rules.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "policy/fuzz_fixture.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace qrexec::policy;
  std::string_view text(reinterpret_cast<const char*>(data), size);
  // Keep includes away from the kernel's pseudo files.
  for (std::string_view bad : {"/proc", "/sys", "/dev"})
    if (text.find(bad) != std::string_view::npos) return 0;
  LoadOptions options;
  options.legacy_dir = "/nonexistent-qrexec-fuzz-legacy";
  auto policy = ParsePolicyText(text, "fuzz.policy", options, "/nonexistent-qrexec-fuzz");
  if (!policy) return 0;
  for (const char* target : {"vm2", "@default", "@dispvm", "@dispvm:dvm", "dom0", "remote"})
    fuzz::EvaluateAll(*policy, MakeRequest("vm1", target, "test.Service+arg"));
  fuzz::EvaluateAll(*policy, MakeRequest("vm1", "vm2", "test.Service+arg", "remote"));
  fuzz::EvaluateAll(*policy, MakeRequest("vm2", "@dispvm", "other"));
  for (const Rule& rule : policy->rules()) (void)rule.ToString();
  return 0;
}
