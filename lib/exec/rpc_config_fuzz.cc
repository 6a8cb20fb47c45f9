// libFuzzer target: rpc-config parsing (the Qubes subset scan plus toml++).
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "base/check.h"
#include "base/log.h"
#include "exec/rpc_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static bool quiet = [] {
    qrexec::log::SetMinLevel(qrexec::log::Level::kError);
    return true;
  }();
  (void)quiet;
  std::string_view input(reinterpret_cast<const char*>(data), size);
  auto config = qrexec::exec::ParseRpcConfig(input, "fuzz");
  if (config) {
    QREXEC_CHECK(!config->force_user || !config->force_user->empty());
    QREXEC_CHECK(!config->force_user ||
                 !(config->skip_service_descriptor || config->exit_on_service_eof ||
                   config->exit_on_client_eof));
    QREXEC_CHECK(input.find('\0') == std::string_view::npos);
  }
  return 0;
}
