#include "policy/loader.h"

#include <dirent.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>

#include <fmt/core.h>

#include "base/log.h"
#include "policy/text.h"

namespace qrexec::policy {
namespace {

bool EndsWith(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

// The spelling pathlib gives a directory: "." components and repeated or
// trailing slashes dropped ("./p//" -> "p"), ".." kept.
std::string StripTrailingSlashes(std::string path) {
  if (path.empty()) return path;
  bool absolute = path[0] == '/';
  std::string out;
  size_t pos = 0;
  while (pos <= path.size()) {
    size_t slash = path.find('/', pos);
    if (slash == std::string::npos) slash = path.size();
    std::string part = path.substr(pos, slash - pos);
    if (!part.empty() && part != ".") out += (out.empty() ? "" : "/") + part;
    pos = slash + 1;
  }
  if (absolute) return "/" + out;
  return out.empty() ? "." : out;
}

std::string Join(std::string_view dir, std::string_view name) {
  std::string d = StripTrailingSlashes(std::string(dir));
  if (d.empty()) return std::string(name);
  if (d == "/") return "/" + std::string(name);
  return d + "/" + std::string(name);
}

// Python's Path.resolve(strict=False): symlinks followed as far as the path
// exists, the rest appended lexically.
std::string ResolvePath(const std::string& path) {
  char buf[PATH_MAX];
  if (::realpath(path.c_str(), buf) != nullptr) return buf;
  size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) {
    if (::realpath(".", buf) == nullptr) return path;
    return Join(buf, path);
  }
  std::string parent = slash == 0 ? "/" : path.substr(0, slash);
  std::string base = path.substr(slash + 1);
  std::string resolved_parent = parent == path ? parent : ResolvePath(parent);
  if (base.empty() || base == ".") return resolved_parent;
  if (base == "..") {
    size_t up = resolved_parent.find_last_of('/');
    return up == 0 || up == std::string::npos ? "/" : resolved_parent.substr(0, up);
  }
  return Join(resolved_parent, base);
}

bool IsRegularFile(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

bool IsDirectory(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

std::string OsErrorText(int err, const std::string& path) {
  return fmt::format("[Errno {}] {}: {}", err, std::strerror(err), text::PyRepr(path));
}

// Names in `dir` (not recursive); kRefused "failed to load" when unreadable.
Result<std::vector<std::string>> ListDir(const std::string& dir) {
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) {
    int err = errno;
    return MakeError(ErrorKind::kRefused,
                     fmt::format("failed to load {} file: {}", dir, OsErrorText(err, dir)));
  }
  std::vector<std::string> names;
  while (struct dirent* entry = ::readdir(d)) {
    std::string name = entry->d_name;
    if (name != "." && name != "..") names.push_back(std::move(name));
  }
  ::closedir(d);
  std::sort(names.begin(), names.end());
  return names;
}

// §1.2 steps 1-2: regular *.policy files that are not dotfiles; any such name
// with a bad character fails the whole load.
Result<std::vector<std::string>> ListPolicyFiles(const std::string& dir) {
  auto names = ListDir(dir);
  if (!names) return names;
  std::vector<std::string> out;
  for (const std::string& name : *names) {
    if (name[0] == '.' || !EndsWith(name, kPolicySuffix)) continue;
    if (!IsRegularFile(Join(dir, name))) continue;
    if (!IsValidPolicyFileName(name))
      return MakeError(ErrorKind::kRefused, "invalid filename: " + Join(dir, name));
    out.push_back(name);
  }
  return out;
}

class Loader {
 public:
  explicit Loader(const LoadOptions& options) : options_(options) {}

  Status LoadDirs(const std::vector<std::string>& dirs) {
    std::map<std::string, std::string> files;  // name -> directory (first dir wins)
    for (const std::string& dir : dirs) {
      auto names = PolicyFilesIn(dir);
      if (!names) return tl::unexpected(names.error());
      for (const std::string& name : *names) files.emplace(name, dir);
    }
    for (const auto& [name, dir] : files) {
      Status status = LoadNewFile(Join(dir, name), StripTrailingSlashes(dir), 0);
      if (!status) return status;
    }
    return Ok();
  }

  Status LoadText(std::string_view text, const std::string& file, const std::string& top_dir) {
    if (!text::IsValidUtf8(text))
      return MakeError(ErrorKind::kMalformed, file + ": policy text is not valid UTF-8");
    stack_.push_back(file);
    Status status = ParseNew(text, file, top_dir, 0);
    stack_.pop_back();
    return status;
  }

  std::vector<Rule> TakeRules() { return std::move(rules_); }

 private:
  // The override entry for `path`, or nullptr when the disk decides.
  const std::optional<std::string>* Override(const std::string& path) const {
    if (options_.overrides.empty()) return nullptr;
    auto it = options_.overrides.find(ResolvePath(path));
    return it == options_.overrides.end() ? nullptr : &it->second;
  }

  // ListPolicyFiles with the overrides applied: removed files left out, new
  // *.policy files in `dir` added (in name order).
  Result<std::vector<std::string>> PolicyFilesIn(const std::string& dir) const {
    auto names = ListPolicyFiles(dir);
    if (!names || options_.overrides.empty()) return names;
    std::erase_if(*names, [&](const std::string& name) {
      const auto* entry = Override(Join(dir, name));
      return entry != nullptr && !entry->has_value();
    });
    std::string resolved_dir = ResolvePath(dir);
    for (const auto& [path, content] : options_.overrides) {
      size_t slash = path.find_last_of('/');
      if (!content || slash == std::string::npos || path.substr(0, slash) != resolved_dir) continue;
      std::string name = path.substr(slash + 1);
      if (name.empty() || name[0] == '.' || !EndsWith(name, kPolicySuffix)) continue;
      if (std::find(names->begin(), names->end(), name) != names->end()) continue;
      if (!IsValidPolicyFileName(name))
        return MakeError(ErrorKind::kRefused, "invalid filename: " + Join(dir, name));
      names->push_back(name);
    }
    std::sort(names->begin(), names->end());
    return names;
  }

  // The include check: a regular file on disk or a proposed one, never one
  // about to be removed.
  Status CheckIncludedFile(const std::string& path, const std::string& file, int lineno) const {
    if (const auto* entry = Override(path)) {
      if (!entry->has_value())
        return SyntaxAt(file, lineno, "including a file that will be removed: " + path);
      return Ok();
    }
    if (!IsRegularFile(path)) return SyntaxAt(file, lineno, "not a file: " + path);
    return Ok();
  }

  static tl::unexpected<Error> SyntaxAt(const std::string& file, int line, std::string message) {
    return MakeError(ErrorKind::kMalformed, SyntaxError{file, line, std::move(message)}.Message());
  }

  // Reads a file and checks it is UTF-8 text; refuses include cycles.
  Result<std::string> ReadText(const std::string& path, int depth) {
    if (depth > kMaxIncludeDepth)
      return MakeError(ErrorKind::kMalformed,
                       fmt::format("{}: includes nested deeper than {}", path, kMaxIncludeDepth));
    std::string key = ResolvePath(path);
    if (std::find(stack_.begin(), stack_.end(), key) != stack_.end())
      return MakeError(ErrorKind::kMalformed, fmt::format("include cycle: {} includes itself", path));
    if (const auto* entry = Override(path); entry != nullptr && entry->has_value()) {
      if (!text::IsValidUtf8(**entry))
        return MakeError(ErrorKind::kMalformed, path + ": policy text is not valid UTF-8");
      return **entry;
    }
    std::ifstream in(path, std::ios::binary);
    if (!in) {
      int err = errno;
      return MakeError(ErrorKind::kMalformed, "cannot read " + OsErrorText(err, path));
    }
    std::ostringstream buf;
    buf << in.rdbuf();
    std::string text = buf.str();
    if (!text::IsValidUtf8(text))
      return MakeError(ErrorKind::kMalformed, path + ": policy text is not valid UTF-8");
    return text;
  }

  Status LoadNewFile(const std::string& path, const std::string& top_dir, int depth) {
    auto text = ReadText(path, depth);
    if (!text) return tl::unexpected(text.error());
    stack_.push_back(ResolvePath(path));
    Status status = ParseNew(*text, path, top_dir, depth);
    stack_.pop_back();
    return status;
  }

  Status LoadServiceFile(const std::string& path, const std::optional<std::string>& service,
                         const std::optional<std::string>& argument, const std::string& top_dir,
                         int depth) {
    auto text = ReadText(path, depth);
    if (!text) return tl::unexpected(text.error());
    stack_.push_back(ResolvePath(path));
    Status status = ParseService(*text, path, service, argument, top_dir, depth);
    stack_.pop_back();
    return status;
  }

  std::string ResolveParam(const std::string& top_dir, std::string_view param) {
    std::string p(param);
    return ResolvePath(!p.empty() && p[0] == '/' ? p : Join(top_dir, p));
  }

  Status ParseNew(std::string_view text, const std::string& file, const std::string& top_dir,
                  int depth) {
    int lineno = 0;
    for (std::string_view raw : text::SplitLines(text)) {
      ++lineno;
      std::string_view line = text::Strip(raw);
      if (line.empty() || line[0] == '#') continue;
      std::vector<std::string_view> fields = text::SplitFields(line);
      if (line[0] == '!') {
        Status status = Directive(fields, file, lineno, top_dir, depth);
        if (!status) return status;
        continue;
      }
      auto rule = ParseRuleFields(fields, RuleLocation{file, lineno});
      if (!rule) return SyntaxAt(file, lineno, rule.error().message);
      rules_.push_back(std::move(*rule));
    }
    return Ok();
  }

  Status Directive(const std::vector<std::string_view>& fields, const std::string& file,
                   int lineno, const std::string& top_dir, int depth) {
    std::string_view word = fields[0];
    size_t nparams = fields.size() - 1;
    if (word == "!include") {
      if (nparams != 1) return SyntaxAt(file, lineno, "invalid number of params");
      std::string path = ResolveParam(top_dir, fields[1]);
      if (Status ok = CheckIncludedFile(path, file, lineno); !ok) return ok;
      return LoadNewFile(path, top_dir, depth + 1);
    }
    if (word == "!include-dir") {
      if (nparams != 1) return SyntaxAt(file, lineno, "invalid number of params");
      std::string dir = ResolveParam(top_dir, fields[1]);
      if (!IsDirectory(dir)) return SyntaxAt(file, lineno, "not a directory: " + dir);
      auto names = PolicyFilesIn(dir);
      if (!names) return tl::unexpected(names.error());
      for (const std::string& name : *names) {
        Status status = LoadNewFile(Join(dir, name), top_dir, depth + 1);
        if (!status) return status;
      }
      return Ok();
    }
    if (word == "!include-service") {
      if (nparams != 3) return SyntaxAt(file, lineno, "invalid number of params");
      std::optional<std::string> service, argument;
      if (auto status = ValidateServiceAndArgument(fields[1], fields[2], &service, &argument);
          !status)
        return SyntaxAt(file, lineno, status.error().message);
      std::string path = ResolveParam(top_dir, fields[3]);
      if (Status ok = CheckIncludedFile(path, file, lineno); !ok) return ok;
      return LoadServiceFile(path, service, argument, top_dir, depth + 1);
    }
    if (word == "!compat-4.0") {
      if (nparams != 0) return SyntaxAt(file, lineno, "invalid number of params");
      if (in_compat_) return SyntaxAt(file, lineno, "!compat-4.0 is not recursive");
      if (!options_.compat40) return Ok();
      LOG_WARNING("{}:{}: !compat-4.0 is a transitional directive and will be removed", file,
                  lineno);
      return LoadCompat(depth + 1);
    }
    return SyntaxAt(file, lineno, "invalid directive");
  }

  Status ParseService(std::string_view text, const std::string& file,
                      const std::optional<std::string>& service,
                      const std::optional<std::string>& argument, const std::string& top_dir,
                      int depth) {
    int lineno = 0;
    for (std::string_view raw : text::SplitLines(text)) {
      ++lineno;
      std::string_view stripped = text::Strip(raw);
      if (stripped.empty() || stripped[0] == '#') continue;
      std::string line;
      for (size_t i = 0; i < stripped.size(); ++i) {
        if (stripped.substr(i, 9) == "$include:") {
          line += "!include ";
          i += 8;
        } else if (stripped[i] == '$') {
          line += '@';
        } else if (stripped[i] == ',') {
          line += ' ';
        } else {
          line += stripped[i];
        }
      }
      std::vector<std::string_view> fields = text::SplitFields(line);
      if (line[0] == '!') {
        if (fields[0] != "!include") return SyntaxAt(file, lineno, "invalid directive");
        if (fields.size() != 2) return SyntaxAt(file, lineno, "invalid number of params");
        std::string path = ResolveParam(top_dir, fields[1]);
        if (Status ok = CheckIncludedFile(path, file, lineno); !ok) return ok;
        Status status = LoadServiceFile(path, service, argument, top_dir, depth + 1);
        if (!status) return status;
        continue;
      }
      auto rule = ParseServiceRuleFields(fields, service, argument, RuleLocation{file, lineno});
      if (!rule) return SyntaxAt(file, lineno, rule.error().message);
      rules_.push_back(std::move(*rule));
    }
    return Ok();
  }

  // §1.6: the R4.0 per-service files, with implicit denies after each file
  // for a specific argument.
  Status LoadCompat(int depth) {
    // A missing legacy directory fails the whole load (so every call is
    // denied), as in the reference: the package ships the directory empty,
    // so its absence means a broken install, and guessing "no legacy
    // rules" could drop denies an admin still relies on.
    const std::string dir = StripTrailingSlashes(options_.legacy_dir);
    auto names = ListDir(dir);
    if (!names) return tl::unexpected(names.error());
    struct Entry {
      std::string service, argument, name;
    };
    std::vector<Entry> entries;
    for (const std::string& name : *names) {
      bool skip = name[0] == '.' || EndsWith(name, ".rpmsave") || EndsWith(name, ".rpmnew") ||
                  EndsWith(name, ".swp") || !IsRegularFile(Join(dir, name));
      for (char c : name) {
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '+' || c == '-' || c == '.' || c == '_';
        if (!ok) skip = true;
      }
      if (skip) {
        LOG_INFO("skipping legacy policy file {}", Join(dir, name));
        continue;
      }
      size_t plus = name.find('+');
      if (plus == std::string::npos)
        entries.push_back({name, "*", name});
      else
        entries.push_back({name.substr(0, plus), name.substr(plus), name});
    }
    std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
      if (a.service != b.service) return a.service < b.service;
      if ((a.argument == "*") != (b.argument == "*")) return b.argument == "*";
      return a.argument < b.argument;
    });
    in_compat_ = true;
    for (const Entry& entry : entries) {
      std::string path = Join(dir, entry.name);
      std::optional<std::string> service, argument;
      if (auto status = ValidateServiceAndArgument(entry.service, entry.argument, &service,
                                                   &argument);
          !status) {
        in_compat_ = false;
        return MakeError(ErrorKind::kMalformed,
                         SyntaxError{path, std::nullopt, status.error().message}.Message());
      }
      Status status = LoadServiceFile(path, service, argument, dir, depth);
      if (!status) {
        in_compat_ = false;
        return status;
      }
      if (entry.argument == "*") continue;
      for (const char* target : {"@anyvm", "@adminvm"}) {
        auto rule = ParseServiceRuleFields({"@anyvm", target, "deny"}, service, argument,
                                           RuleLocation{path, std::nullopt});
        if (rule) rules_.push_back(std::move(*rule));
      }
    }
    in_compat_ = false;
    return Ok();
  }

  const LoadOptions& options_;
  std::vector<Rule> rules_;
  std::vector<std::string> stack_;  // resolved paths of the files being loaded
  bool in_compat_ = false;
};

}  // namespace

bool IsValidPolicyFileName(std::string_view name) {
  if (name.empty()) return false;
  for (char c : name) {
    bool ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || c == '_' || c == '.' || c == '-';
    if (!ok) return false;
  }
  return true;
}

Result<Policy> LoadPolicy(const LoadOptions& options) {
  Loader loader(options);
  std::vector<std::string> dirs = options.dirs;
  if (dirs.empty()) dirs = {kRuntimePolicyPath, kPolicyPath};
  Status status = loader.LoadDirs(dirs);
  if (!status) return tl::unexpected(status.error());
  return Policy(loader.TakeRules());
}

Result<Policy> ParsePolicyText(std::string_view text, std::string_view file_name,
                               const LoadOptions& options, std::string_view base_dir) {
  Loader loader(options);
  Status status = loader.LoadText(text, std::string(file_name), std::string(base_dir));
  if (!status) return tl::unexpected(status.error());
  return Policy(loader.TakeRules());
}

}  // namespace qrexec::policy
