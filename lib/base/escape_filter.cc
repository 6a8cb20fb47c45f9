#include "base/escape_filter.h"

namespace qrexec {
namespace {

bool IsAllowed(unsigned char c) {
  return (c >= 0x20 && c <= 0x7e) || c == '\t' || c == '\n' || c == '\r' || c == '\b' || c == '\a';
}

}  // namespace

void FilterEscapes(std::span<char> bytes) {
  for (char& c : bytes)
    if (!IsAllowed(static_cast<unsigned char>(c))) c = '_';
}

std::string SanitizeForLog(std::string_view untrusted) {
  std::string out(untrusted);
  FilterEscapes(out);
  // Newlines would let a peer forge extra log lines.
  for (char& c : out)
    if (c == '\n' || c == '\r') c = '_';
  return out;
}

}  // namespace qrexec
