#include "base/names.h"

namespace qrexec::names {
namespace {

bool IsAsciiAlpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool IsAsciiDigit(char c) { return c >= '0' && c <= '9'; }
bool IsAsciiAlnum(char c) { return IsAsciiAlpha(c) || IsAsciiDigit(c); }

}  // namespace

bool IsValidQubeName(std::string_view name) {
  if (name.empty() || name.size() > 31 || !IsAsciiAlpha(name[0])) return false;
  for (char c : name)
    if (!IsAsciiAlnum(c) && c != '_' && c != '-') return false;
  if (name == "Domain-0" || name == "none" || name == "default") return false;
  return !(name.size() >= 3 && name.substr(name.size() - 3) == "-dm");
}

std::string Sanitize(std::string_view untrusted, std::string_view extra_allowed) {
  std::string out(untrusted);
  for (char& c : out) {
    bool ok = IsAsciiAlnum(c) || c == '_' || c == '.' || c == '-' ||
              extra_allowed.find(c) != std::string_view::npos;
    if (!ok || c == '\0') c = '_';
  }
  return out;
}

bool IsValidRequestIdText(std::string_view text) {
  for (char c : text)
    if (!IsAsciiAlnum(c) && c != '_' && c != '.' && c != '-' && c != ' ') return false;
  return true;
}

bool RefersToDom0(std::string_view target) {
  return target == "dom0" || target == "@adminvm" ||
         target == "uuid:00000000-0000-0000-0000-000000000000";
}

}  // namespace qrexec::names
