// qubes-policy-lint [-s] [-i] FILE|-... (policy-language.md §5.6,
// qrexec-protocol.md §1.9): checks policy files line by line and reports
// every problem as "PATH:LINE: error: MESSAGE" (with -s, ": LINE TEXT" is
// appended). Included files are not read; an include path must be a plain
// name or include/NAME. -i checks the files as !include-service (old-format)
// files. Exit 0 when clean, 1 after the first file with errors, 2 on usage.
#include <fmt/core.h>
#include <getopt.h>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <iterator>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "base/escape_filter.h"
#include "base/sys.h"
#include "policy/rule.h"
#include "policy/text.h"

namespace qrexec::policy_tools {
namespace {

using policy::RuleLocation;

// In lint, an include target must be a name the in-memory loader knows.
std::optional<std::string> CheckIncludePath(std::string_view path) {
  std::string_view name = path;
  if (name.starts_with("include/")) name.remove_prefix(8);
  if (name.empty() || name.find('/') != std::string_view::npos)
    return fmt::format("no such policy file: {}", policy::text::PyRepr(path));
  return std::nullopt;
}

std::optional<std::string> CheckNewDirective(const std::vector<std::string_view>& fields) {
  std::string_view word = fields[0];
  size_t params = fields.size() - 1;
  if (word == "!include" || word == "!include-dir") {
    if (params != 1) return "invalid number of params";
    return word == "!include" ? CheckIncludePath(fields[1]) : std::nullopt;
  }
  if (word == "!include-service") {
    if (params != 3) return "invalid number of params";
    std::optional<std::string> service, argument;
    if (auto status = policy::ValidateServiceAndArgument(fields[1], fields[2], &service, &argument);
        !status)
      return status.error().message;
    return CheckIncludePath(fields[3]);
  }
  if (word == "!compat-4.0")
    return params != 0 ? std::optional<std::string>("invalid number of params") : std::nullopt;
  return "invalid directive";
}

// The $/, rewriting of old-format lines (§1.5 step 2).
std::string RewriteServiceLine(std::string_view line) {
  std::string out;
  for (size_t i = 0; i < line.size(); ++i) {
    if (line.substr(i, 9) == "$include:") {
      out += "!include ";
      i += 8;
    } else {
      out += line[i] == '$' ? '@' : line[i] == ',' ? ' ' : line[i];
    }
  }
  return out;
}

// The problem on one stripped, non-comment line, if any.
std::optional<std::string> CheckLine(std::string_view line, bool service_file,
                                     const RuleLocation& location) {
  if (service_file) {
    std::string rewritten = RewriteServiceLine(line);
    auto fields = policy::text::SplitFields(rewritten);
    if (rewritten[0] == '!') {
      if (fields[0] != "!include") return "invalid directive";
      if (fields.size() != 2) return "invalid number of params";
      return CheckIncludePath(fields[1]);
    }
    auto rule = policy::ParseServiceRuleFields(fields, std::nullopt, std::nullopt, location);
    return rule ? std::nullopt : std::optional(rule.error().message);
  }
  auto fields = policy::text::SplitFields(line);
  if (line[0] == '!') return CheckNewDirective(fields);
  auto rule = policy::ParseRuleFields(fields, location);
  return rule ? std::nullopt : std::optional(rule.error().message);
}

// Returns the number of problems found in one file.
int LintText(const std::string& path, std::string_view text, bool show_line, bool service_file) {
  if (!policy::text::IsValidUtf8(text)) {
    std::printf("%s:0: error: policy text is not valid UTF-8\n", SanitizeForLog(path).c_str());
    return 1;
  }
  int errors = 0;
  int lineno = 0;
  for (std::string_view raw : policy::text::SplitLines(text)) {
    ++lineno;
    std::string_view line = policy::text::Strip(raw);
    if (line.empty() || line[0] == '#') continue;
    auto problem = CheckLine(line, service_file, RuleLocation{path, lineno});
    if (!problem) continue;
    ++errors;
    std::string out = fmt::format("{}:{}: error: {}", path, lineno, *problem);
    if (show_line) out += fmt::format(": {}", line);
    std::printf("%s\n", SanitizeForLog(out).c_str());
  }
  return errors;
}

std::optional<std::string> ReadInput(const std::string& path) {
  if (path == "-") return std::string(std::istreambuf_iterator<char>(std::cin), {});
  return sys::ReadWholeFile(path);
}

void Usage(FILE* out) {
  std::fprintf(out, "usage: qubes-policy-lint [-s|--show-line] [-i|--include-service] FILE|-...\n");
}

int Main(int argc, char** argv) {
  bool show_line = false;
  bool service_file = false;
  static const option kLong[] = {{"show-line", no_argument, nullptr, 's'},
                                 {"include-service", no_argument, nullptr, 'i'},
                                 {"help", no_argument, nullptr, 'h'},
                                 {nullptr, 0, nullptr, 0}};
  for (int opt; (opt = getopt_long(argc, argv, "sih", kLong, nullptr)) != -1;) {
    switch (opt) {
      case 's':
        show_line = true;
        break;
      case 'i':
        service_file = true;
        break;
      case 'h':
        Usage(stdout);
        return 0;
      default:
        Usage(stderr);
        return 2;
    }
  }
  if (optind == argc) {
    Usage(stderr);
    return 2;
  }
  for (int i = optind; i < argc; ++i) {
    std::string path = argv[i];
    auto text = ReadInput(path);
    if (!text) {
      std::printf("%s:0: error: cannot read the file\n", SanitizeForLog(path).c_str());
      return 1;
    }
    if (LintText(path == "-" ? "<stdin>" : path, *text, show_line, service_file) > 0) return 1;
  }
  return 0;
}

}  // namespace
}  // namespace qrexec::policy_tools

int main(int argc, char** argv) { return qrexec::policy_tools::Main(argc, argv); }
