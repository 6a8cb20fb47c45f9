// Small helpers shared by the benchmark programs: percentiles, a results
// table, and bench/results.json fragments ({"name","value","unit"} objects).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>
#include <vector>

namespace qrexec::bench {

using Clock = std::chrono::steady_clock;

double Percentile(std::vector<double> values, double p);
double MsSince(Clock::time_point start);

struct Metric {
  std::string name;
  double value;
  std::string unit;
};

class Report {
 public:
  void Add(std::string name, double value, std::string unit);
  // A free-form line for the printed table (ratios, goals).
  void Note(std::string line);
  // Prints the table and writes the metrics as a JSON list to `json_path`
  // (merged later by bench/run.sh).
  void Finish(const std::string& json_path) const;

 private:
  std::vector<Metric> metrics_;
  std::vector<std::string> notes_;
};

// fork + execve + waitpid of argv with stdio on /dev/null; returns the exit
// status (128+signal for a signal).
// Like SpawnDetached, but with posix_spawn (no copy of the benchmark's page
// tables): for starting many calls at once, where the harness's own fork
// cost would otherwise be counted in the calls' time.
pid_t SpawnLight(const std::vector<std::string>& argv, const std::vector<std::string>& env);
int SpawnAndWait(const std::vector<std::string>& argv, const std::vector<std::string>& env);
// fork + execve without waiting; stdio on /dev/null.
pid_t SpawnDetached(const std::vector<std::string>& argv, const std::vector<std::string>& env);
int DecodeStatus(int status);

// Resident set size (KiB) and open descriptors of a process.
// A /proc/PID/status memory field in KiB: VmRSS (all resident pages),
// RssAnon (private memory: heap, stacks), RssFile (mapped files: code).
long RssKiB(pid_t pid, const std::string& field = "VmRSS");
int OpenFds(pid_t pid);

}  // namespace qrexec::bench
