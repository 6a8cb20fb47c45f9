// Helpers shared by the policy tests.
#pragma once

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include <gtest/gtest.h>

#include "policy/evaluate.h"
#include "policy/loader.h"
#include "policy/system_info.h"

namespace qrexec::policy::testing {

// The shared conformance folder beside the checkout.
inline std::string SharedConformanceDir() {
  return std::string(QREXEC_SOURCE_DIR) + "/../shared/conformance";
}

// The 19-domain system of policy-language.md §6.2 (conformance/system-info.json).
inline const SystemInfo& TestSystemInfo() {
  static const SystemInfo info = [] {
    auto loaded = SystemInfo::FromFile(SharedConformanceDir() + "/system-info.json");
    if (!loaded) {
      ADD_FAILURE() << "missing shared conformance data: " << loaded.error().message;
      std::abort();
    }
    return *loaded;
  }();
  return info;
}

// A fresh temporary directory, removed at destruction.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "policy-test-XXXXXX").string();
    path_ = ::mkdtemp(tmpl.data());
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }
  std::string Write(const std::string& rel, const std::string& text) const {
    std::filesystem::path p = std::filesystem::path(path_) / rel;
    std::filesystem::create_directories(p.parent_path());
    std::ofstream(p, std::ios::binary) << text;
    return p.string();
  }
  std::string Mkdir(const std::string& rel) const {
    std::filesystem::create_directories(std::filesystem::path(path_) / rel);
    return path_ + "/" + rel;
  }

 private:
  std::string path_;
};

// Parses `text` as one in-memory policy file named "test.policy".
inline Policy MustParse(const std::string& text) {
  auto policy = ParsePolicyText(text, "test.policy");
  if (!policy) ADD_FAILURE() << policy.error().message;
  return policy ? *policy : Policy();
}

inline std::string ParseError(const std::string& text) {
  auto policy = ParsePolicyText(text, "test.policy");
  if (policy) return "<parsed>";
  return policy.error().message;
}

inline Decision Eval(const Policy& policy, const std::string& source, const std::string& target,
                     const std::string& service_and_arg = "test.Service+argument",
                     const std::string& requested_source = "") {
  Request req = MakeRequest(source, target, service_and_arg, requested_source);
  Decision indexed = Evaluate(policy, TestSystemInfo(), req, MatchPath::kIndexed);
  Decision linear = Evaluate(policy, TestSystemInfo(), req, MatchPath::kLinear);
  EXPECT_EQ(indexed.answer, linear.answer);
  EXPECT_EQ(indexed.reason, linear.reason);
  EXPECT_EQ(indexed.targets, linear.targets);
  return indexed;
}

inline std::string Allow(const std::string& target, const std::string& uuid,
                         const std::string& requested, const std::string& autostart = "True",
                         const std::string& user = "DEFAULT") {
  return "user=" + user + "\nresult=allow\ntarget=" + target + "\ntarget_uuid=" + uuid +
         "\nautostart=" + autostart + "\nrequested_target=" + requested;
}

}  // namespace qrexec::policy::testing
