// The NULL-terminated char* array execve() and friends take, pointing into
// `strings` (which must outlive it and stay unchanged).
#pragma once

#include <string>
#include <vector>

namespace qrexec {

inline std::vector<char*> CStringArray(const std::vector<std::string>& strings) {
  std::vector<char*> out;
  out.reserve(strings.size() + 1);
  for (const std::string& s : strings) out.push_back(const_cast<char*>(s.c_str()));
  out.push_back(nullptr);
  return out;
}

}  // namespace qrexec
