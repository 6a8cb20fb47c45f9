// SHA-256 (FIPS 180-4) of a byte string, as lowercase hex. The policy admin
// API uses it for its file tokens ("sha256:" + hex); nothing here needs to be
// fast or constant-time, so it is a plain, dependency-free implementation.
#pragma once

#include <string>
#include <string_view>

namespace qrexec::policy_tools {

// 64 lowercase hex digits.
std::string Sha256Hex(std::string_view data);

}  // namespace qrexec::policy_tools
