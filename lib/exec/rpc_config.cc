#include "exec/rpc_config.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <charconv>
#include <cstdint>
#include <set>
#include <string>
#include <utility>

#include <toml++/toml.h>

#include "base/escape_filter.h"
#include "base/log.h"
#include "base/sys.h"

namespace qrexec::exec {
namespace {

tl::unexpected<Error> Bad(std::string_view origin, size_t line_number, std::string message) {
  std::string text = SanitizeForLog(origin);
  if (line_number > 0) text += ":" + std::to_string(line_number);
  if (!text.empty()) text += ": ";
  return MakeError(ErrorKind::kMalformed, text + message);
}

bool IsLetter(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsKeyChar(char c) { return IsLetter(c) || IsDigit(c) || c == '.' || c == '-' || c == '_'; }
bool IsBlank(char c) { return c == ' ' || c == '\t'; }

bool IsKnownKey(std::string_view key) {
  return key == "wait-for-session" || key == "force-user" || key == "skip-service-descriptor" ||
         key == "exit-on-service-eof" || key == "exit-on-client-eof";
}

// Checks one non-empty, non-comment line against the Qubes subset and
// returns its key. The value must be true/false, a decimal integer without
// sign or leading zeros that fits in 64 unsigned bits, or a single-quoted
// string; what follows it may only be blanks and a comment.
Result<std::string> ScanLine(std::string_view line, std::string_view origin, size_t number) {
  if (IsBlank(line[0])) return Bad(origin, number, "leading whitespace");
  if (line[0] == '[') return Bad(origin, number, "section headers are not allowed");
  if (!IsLetter(line[0])) return Bad(origin, number, "a key must start with a letter");
  size_t pos = 0;
  while (pos < line.size() && IsKeyChar(line[pos])) ++pos;
  std::string key(line.substr(0, pos));
  while (pos < line.size() && IsBlank(line[pos])) ++pos;
  if (pos >= line.size() || line[pos] != '=') return Bad(origin, number, "expected '='");
  ++pos;
  while (pos < line.size() && IsBlank(line[pos])) ++pos;
  std::string_view value = line.substr(pos);

  size_t length = 0;
  if (value.starts_with("true")) {
    length = 4;
  } else if (value.starts_with("false")) {
    length = 5;
  } else if (value.starts_with("'''")) {
    return Bad(origin, number, "triple-quoted strings are not allowed");
  } else if (value.starts_with("'")) {
    size_t close = value.find('\'', 1);
    if (close == std::string_view::npos) return Bad(origin, number, "unterminated string");
    length = close + 1;
  } else if (value.starts_with("\"")) {
    return Bad(origin, number, "double-quoted strings are not allowed");
  } else if (!value.empty() && IsDigit(value[0])) {
    while (length < value.size() && IsDigit(value[length])) ++length;
    if (value[0] == '0' && length > 1)
      return Bad(origin, number, "integers must not have leading zeros");
    uint64_t integer = 0;
    auto parsed = std::from_chars(value.data(), value.data() + length, integer);
    if (parsed.ec != std::errc()) return Bad(origin, number, "integer out of range");
  } else {
    return Bad(origin, number, "invalid value");
  }
  std::string_view after = value.substr(length);
  size_t skip = 0;
  while (skip < after.size() && IsBlank(after[skip])) ++skip;
  after.remove_prefix(skip);
  if (!after.empty() && after[0] != '#')
    return Bad(origin, number, "unexpected text after the value");
  return key;
}

// Checks the whole text line by line (ScanLine) and returns the part that
// toml++ is to parse: the lines of known keys, each at most once. A line with
// an unknown key is logged and blanked (line numbers stay), whatever its
// (valid) value, and may repeat, as in Qubes; so dotted keys never become
// TOML tables either.
Result<std::string> ScanDocument(std::string_view text, std::string_view origin) {
  if (text.find('\0') != std::string_view::npos) return Bad(origin, 0, "NUL byte");
  std::set<std::string> keys;
  std::string known;
  size_t number = 0;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(start, end - start);
    start = end + 1;
    ++number;
    if (line.ends_with('\r')) line.remove_suffix(1);
    if (!line.empty() && line[0] != '#') {
      auto key = ScanLine(line, origin, number);
      if (!key) return tl::unexpected(key.error());
      if (IsKnownKey(*key)) {
        if (!keys.insert(*key).second) return Bad(origin, number, "duplicate key");
        known += line;
      } else {
        LOG_WARNING("{}:{}: unknown rpc-config key '{}' ignored", SanitizeForLog(origin), number,
                    SanitizeForLog(*key));
      }
    }
    known += '\n';
  }
  return known;
}

Result<bool> GetBool(const std::string& key, const toml::node& node, std::string_view origin) {
  if (const auto* value = node.as_boolean()) return value->get();
  return Bad(origin, 0, key + " must be true or false");
}

}  // namespace

Result<RpcConfig> ParseRpcConfig(std::string_view untrusted_text, std::string_view origin) {
  if (untrusted_text.size() > kMaxRpcConfigSize) return Bad(origin, 0, "file too large");
  auto known = ScanDocument(untrusted_text, origin);
  if (!known) return tl::unexpected(known.error());

  toml::table table;
  try {
    table = toml::parse(*known, std::string_view(origin));
  } catch (const toml::parse_error& error) {
    return Bad(origin, error.source().begin.line, SanitizeForLog(error.description()));
  }

  RpcConfig config;
  for (auto&& [toml_key, node] : table) {
    std::string key(toml_key.str());
    if (key == "wait-for-session") {
      if (const auto* integer = node.as_integer()) {
        if (integer->get() != 0 && integer->get() != 1)
          return Bad(origin, 0, "wait-for-session must be true, false, 0 or 1");
        config.wait_for_session = integer->get() == 1;
      } else {
        auto value = GetBool(key, node, origin);
        if (!value) return tl::unexpected(value.error());
        config.wait_for_session = *value;
      }
    } else if (key == "force-user") {
      const auto* value = node.as_string();
      if (value == nullptr) return Bad(origin, 0, "force-user must be a string");
      if (value->get().empty()) return Bad(origin, 0, "force-user must not be empty");
      config.force_user = value->get();
    } else if (key == "skip-service-descriptor" || key == "exit-on-service-eof" ||
               key == "exit-on-client-eof") {
      auto value = GetBool(key, node, origin);
      if (!value) return tl::unexpected(value.error());
      if (key == "skip-service-descriptor") config.skip_service_descriptor = *value;
      else if (key == "exit-on-service-eof") config.exit_on_service_eof = *value;
      else config.exit_on_client_eof = *value;
    } else {
      // ScanDocument passes on known keys only.
      return Bad(origin, 0, "unexpected key " + SanitizeForLog(key));
    }
  }
  if (config.force_user &&
      (config.skip_service_descriptor || config.exit_on_service_eof || config.exit_on_client_eof))
    return Bad(origin, 0,
               "force-user cannot be combined with skip-service-descriptor, "
               "exit-on-service-eof or exit-on-client-eof");
  return config;
}

Result<RpcConfig> LoadRpcConfig(const SearchPath& config_path, std::string_view service_name,
                                const std::optional<std::string>& argument) {
  auto found = FindServiceFile(config_path, service_name, argument);
  if (!found) return tl::unexpected(found.error());
  if (!*found) return RpcConfig{};
  const std::string& path = (*found)->path;

  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK));
  if (!fd.valid()) return ErrnoError("open " + SanitizeForLog(path));
  struct stat st {};
  if (::fstat(fd.get(), &st) < 0) return ErrnoError("fstat " + SanitizeForLog(path));
  if (!S_ISREG(st.st_mode))
    return MakeError(ErrorKind::kMalformed, "rpc-config is not a regular file: " + SanitizeForLog(path));
  auto text = sys::ReadToEof(fd.get(), kMaxRpcConfigSize);
  if (!text) return tl::unexpected(text.error());
  return ParseRpcConfig(*text, path);
}

}  // namespace qrexec::exec
