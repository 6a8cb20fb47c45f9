// Terminal-escape filtering (qrexec-client(-vm) -t/-T, and every log line that
// carries peer text): bytes outside 0x20-0x7E other than TAB, LF, CR, BS and
// BEL become '_'.
#pragma once

#include <span>
#include <string>
#include <string_view>

namespace qrexec {

// In place.
void FilterEscapes(std::span<char> bytes);
// A filtered copy, for log messages quoting a peer.
std::string SanitizeForLog(std::string_view untrusted);

}  // namespace qrexec
