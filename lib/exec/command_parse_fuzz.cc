// libFuzzer target: the command-line parser (§2.12), both user-prefix modes.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "base/check.h"
#include "base/limits.h"
#include "exec/command.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  for (auto prefix : {qrexec::exec::UserPrefix::kPresent, qrexec::exec::UserPrefix::kAbsent}) {
    auto command = qrexec::exec::ParseCommand(input, prefix);
    if (!command) continue;
    QREXEC_CHECK(command->body.size() <= input.size());
    QREXEC_CHECK(command->user.find(':') == std::string::npos);
    if (command->is_rpc()) {
      const auto& call = *command->rpc;
      QREXEC_CHECK(!call.service_name.empty());
      QREXEC_CHECK(call.service_name.size() <= qrexec::limits::kMaxServiceNamePartLen);
      QREXEC_CHECK(call.descriptor.size() <= qrexec::limits::kMaxServiceNameLen);
      QREXEC_CHECK(call.descriptor.find('/') == std::string::npos);
      QREXEC_CHECK(!call.source.empty());
      QREXEC_CHECK(call.argument.has_value() == (call.descriptor.find('+') != std::string::npos));
      // The descriptor header text must round-trip.
      auto again = qrexec::exec::ParseCommand("u:QUBESRPC " + call.rpc_text);
      QREXEC_CHECK(again.has_value());
      QREXEC_CHECK(again->rpc->descriptor == call.descriptor);
    } else {
      QREXEC_CHECK(!command->shell_command.empty());
    }
  }
  return 0;
}
