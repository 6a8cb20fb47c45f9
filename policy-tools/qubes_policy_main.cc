// qubes-policy {[-l]|-g|-r|-d} [include/][NAME]: lists, prints, replaces
// (from stdin) or removes policy files over the policy admin API. Replace
// and remove use the "any" token. Exit 0 on success, 1 when the call failed
// or was refused (the reason on stderr), 2 on usage errors.
// Extensions: -R is -d, and --include means the include/ prefix.
#include <getopt.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <iostream>
#include <iterator>
#include <string>

#include "policy_client.h"

namespace qrexec::policy_tools {
namespace {

constexpr const char* kUsage = "usage: qubes-policy {[-l]|-g|-r|-d} [include/][RPCNAME[+ARGUMENT]]\n";

int UsageError(const std::string& message) {
  std::fprintf(stderr, "%squbes-policy: error: %s\n", kUsage, message.c_str());
  return 2;
}

bool IsRpcNameChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '+' ||
         c == '-' || c == '.' || c == '_';
}

int Failed(const AdminCall& call) {
  if (!call.error_kind.empty()) {
    std::fprintf(stderr, "%s\n", call.error_message.c_str());
    return 1;
  }
  std::fprintf(stderr, "Command failed\n");
  std::string out = call.out;
  while (!out.empty() && std::isspace(static_cast<unsigned char>(out.back()))) out.pop_back();
  if (!out.empty()) std::fprintf(stderr, "%s\n", out.c_str());
  return 1;
}

std::string StripTrailing(std::string text, bool newlines_only) {
  while (!text.empty() && (newlines_only ? text.back() == '\n'
                                         : std::isspace(static_cast<unsigned char>(text.back()))))
    text.pop_back();
  return text;
}

int Main(int argc, char** argv) {
  char method = 'l';
  bool include = false;
  static const option kLong[] = {{"list", no_argument, nullptr, 'l'},
                                 {"get", no_argument, nullptr, 'g'},
                                 {"replace", no_argument, nullptr, 'r'},
                                 {"remove", no_argument, nullptr, 'd'},
                                 {"include", no_argument, nullptr, 'i'},
                                 {"help", no_argument, nullptr, 'h'},
                                 {nullptr, 0, nullptr, 0}};
  for (int opt; (opt = getopt_long(argc, argv, "lgrdRh", kLong, nullptr)) != -1;) {
    switch (opt) {
      case 'l': case 'g': case 'r': case 'd': method = static_cast<char>(opt); break;
      case 'R': method = 'd'; break;
      case 'i': include = true; break;
      case 'h': std::fputs(kUsage, stdout); return 0;
      default: std::fputs(kUsage, stderr); return 2;
    }
  }
  if (argc - optind > 1) return UsageError("unrecognized arguments");
  std::string name = optind < argc ? argv[optind] : "";
  if (name == "include" || name.starts_with("include/")) {
    name = name.size() > 8 ? name.substr(8) : "";
    include = true;
  }
  std::string bad;
  for (char c : name)
    if (!IsRpcNameChar(c) && bad.find(c) == std::string::npos) bad += c;
  std::sort(bad.begin(), bad.end());
  if (!bad.empty()) return UsageError("invalid character(s) in RPCNAME: '" + bad + "'");
  if (method == 'l' && !name.empty()) return UsageError("--list doesn't work with a file name");
  if (method != 'l' && name.empty()) return UsageError("you need to provide a file name");

  if (method == 'l') {
    AdminCall call = CallPolicyAdmin("List", include, "", "");
    if (call.exit_code != 0) return Failed(call);
    std::printf("%s\n", StripTrailing(call.out, true).c_str());
  } else if (method == 'g') {
    AdminCall call = CallPolicyAdmin("Get", include, name, "");
    if (call.exit_code != 0) return Failed(call);
    size_t newline = call.out.find('\n');
    std::string content = newline == std::string::npos ? "" : call.out.substr(newline + 1);
    std::printf("%s\n", StripTrailing(content, false).c_str());
  } else if (method == 'r') {
    std::string content(std::istreambuf_iterator<char>(std::cin), {});
    AdminCall call = CallPolicyAdmin("Replace", include, name, "any\n" + content);
    if (call.exit_code != 0) return Failed(call);
  } else {
    AdminCall call = CallPolicyAdmin("Remove", include, name, "any");
    if (call.exit_code != 0) return Failed(call);
  }
  return 0;
}

}  // namespace
}  // namespace qrexec::policy_tools

int main(int argc, char** argv) { return qrexec::policy_tools::Main(argc, argv); }
