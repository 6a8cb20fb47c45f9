#include "bench_util.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include <fmt/core.h>
#include <nlohmann/json.hpp>

namespace qrexec::bench {

double Percentile(std::vector<double> values, double p) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  size_t index = static_cast<size_t>(p / 100.0 * static_cast<double>(values.size() - 1) + 0.5);
  return values[std::min(index, values.size() - 1)];
}

double MsSince(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

void Report::Add(std::string name, double value, std::string unit) {
  fmt::print("  {:<42} {:>14.3f} {}\n", name, value, unit);
  std::fflush(stdout);
  metrics_.push_back({std::move(name), value, std::move(unit)});
}

void Report::Note(std::string line) {
  fmt::print("  {}\n", line);
  std::fflush(stdout);
  notes_.push_back(std::move(line));
}

void Report::Finish(const std::string& json_path) const {
  nlohmann::json list = nlohmann::json::array();
  for (const auto& m : metrics_) list.push_back({{"name", m.name}, {"value", m.value}, {"unit", m.unit}});
  std::ofstream(json_path) << list.dump(2) << "\n";
}

int DecodeStatus(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

// A NULL-terminated array of pointers into `strings` (which must outlive it).
std::vector<char*> CStrings(const std::vector<std::string>& strings) {
  std::vector<char*> out;
  for (const auto& s : strings) out.push_back(const_cast<char*>(s.c_str()));
  out.push_back(nullptr);
  return out;
}

pid_t SpawnDetached(const std::vector<std::string>& argv, const std::vector<std::string>& env) {
  std::vector<char*> args = CStrings(argv), envp = CStrings(env);
  pid_t pid = fork();
  if (pid == 0) {
    int null_fd = open("/dev/null", O_RDWR);
    dup2(null_fd, 0);
    dup2(null_fd, 1);
    dup2(null_fd, 2);
    execve(args[0], args.data(), envp.data());
    _exit(127);
  }
  return pid;
}

pid_t SpawnLight(const std::vector<std::string>& argv, const std::vector<std::string>& env) {
  std::vector<char*> args = CStrings(argv), envp = CStrings(env);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  for (int fd = 0; fd < 3; ++fd) posix_spawn_file_actions_addopen(&actions, fd, "/dev/null", O_RDWR, 0);
  pid_t pid = -1;
  int rc = posix_spawn(&pid, args[0], &actions, nullptr, args.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  return rc == 0 ? pid : -1;
}

int SpawnAndWait(const std::vector<std::string>& argv, const std::vector<std::string>& env) {
  pid_t pid = SpawnDetached(argv, env);
  int status = 0;
  if (pid < 0 || waitpid(pid, &status, 0) < 0) return -1;
  return DecodeStatus(status);
}

long RssKiB(pid_t pid, const std::string& field) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string key;
  while (in >> key) {
    if (key == field + ":") {
      long value = 0;
      in >> value;
      return value;
    }
    in.ignore(1 << 16, '\n');
  }
  return 0;
}

int OpenFds(pid_t pid) {
  std::error_code ec;
  int count = 0;
  for (auto it = std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd", ec);
       !ec && it != std::filesystem::directory_iterator(); ++it)
    ++count;
  return count;
}

}  // namespace qrexec::bench
