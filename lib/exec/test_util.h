// Test helpers for lib/exec tests: a temporary directory with files.
#pragma once

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "base/sys.h"

namespace qrexec::exec::testing {

class TempDir {
 public:
  TempDir() {
    std::string pattern = ::testing::TempDir() + "qrexec-exec-XXXXXX";
    std::vector<char> buf(pattern.begin(), pattern.end());
    buf.push_back('\0');
    if (::mkdtemp(buf.data()) == nullptr) ADD_FAILURE() << "mkdtemp failed";
    path_ = buf.data();
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

  std::string MakeDir(const std::string& name) const {
    std::string dir = *this / name;
    std::filesystem::create_directories(dir);
    return dir;
  }

 private:
  std::string path_;
};

inline void WriteFile(const std::string& path, const std::string& content, mode_t mode = 0644) {
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << content;
  }
  ::chmod(path.c_str(), mode);
}

// A shell-script service.
inline void WriteScript(const std::string& path, const std::string& body) {
  WriteFile(path, "#!/bin/sh\n" + body + "\n", 0755);
}

inline std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

inline std::string ReadAll(int fd) {
  auto text = sys::ReadToEof(fd, 1 << 20, sys::Deadline::After(std::chrono::seconds(30)));
  EXPECT_TRUE(text.has_value());
  return text ? *text : std::string();
}

}  // namespace qrexec::exec::testing
