// PolicyStore: the policy daemon's cached policy and system info
// (policy-language.md §1.7, §4.2).
//
// * The policy directories (recursively, new subdirectories included) and the
//   legacy directory are watched with inotify. Any change marks the policy
//   outdated and starts a re-parse at once; a request that arrives before it
//   is done waits for it. A failed parse answers
//   the waiting requests with the error (they are denied) and leaves the
//   policy outdated, so the next request tries again.
// * System info comes from a JSON file (re-read when its inode, size or mtime
//   changes) or from qubesd (internal.GetSystemInfo), re-queried when the
//   cached copy is older than a TTL and on every policy reload.
// * Parsing and qubesd queries run on one background thread, so the loop never
//   stalls: requests that need fresh state are parked until it arrives, all
//   others go on. Pending inotify events are read before each request is
//   served, so a change completed before a request was sent is always seen.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "base/result.h"
#include "base/unique_fd.h"
#include "event/loop.h"
#include "policy/loader.h"
#include "policy/policy.h"
#include "policy/system_info.h"

namespace qrexec::policy_tools {

struct StoreOptions {
  policy::LoadOptions load;  // dirs empty = the defaults
  // Exactly one source of system info: a JSON file, else the qubesd socket.
  std::string system_info_file;
  std::string qubesd_socket = "/run/qubesd.sock";
  std::chrono::milliseconds system_info_ttl{1000};
};

// What one evaluation uses. A null pointer means "unavailable": the request
// is refused and `*_error` says why.
struct Snapshot {
  std::shared_ptr<const policy::Policy> policy;
  Error policy_error;
  std::shared_ptr<const policy::SystemInfo> system_info;
  std::string system_info_error;
};

class PolicyStore {
 public:
  using Ready = std::function<void(const Snapshot&)>;

  // Loads everything once (synchronously) and starts watching.
  static Result<std::unique_ptr<PolicyStore>> Create(event::Loop& loop, StoreOptions options);
  ~PolicyStore();
  PolicyStore(const PolicyStore&) = delete;
  PolicyStore& operator=(const PolicyStore&) = delete;

  // Calls `ready` with fresh state: at once when the cache is fresh, else
  // from the loop once the background refresh is done.
  void Acquire(Ready ready);

  size_t reload_count() const { return reload_count_; }

 private:
  struct JobResult {
    uint64_t policy_gen = 0;
    std::optional<Result<policy::Policy>> policy;
    std::optional<Result<policy::SystemInfo>> system_info;
    std::optional<std::string> file_signature;
  };
  struct Waiter {
    uint64_t policy_gen;
    Ready ready;
  };

  PolicyStore(event::Loop& loop, StoreOptions options) : loop_(loop), options_(std::move(options)) {}
  Status Init();
  void DrainInotify();
  void AddWatches();
  bool PolicyFresh() const { return !policy_failed_ && loaded_gen_ >= change_gen_; }
  bool SystemInfoFresh();
  std::string FileSignature() const;
  void StartJob();
  JobResult RunJob(uint64_t gen, bool policy, bool system_info);
  void OnJobDone();
  void Install(JobResult result);
  Snapshot MakeSnapshot() const;

  event::Loop& loop_;
  StoreOptions options_;
  UniqueFd inotify_;
  // Watches on the parent of a missing directory: only these names count.
  std::map<int, std::set<std::string>> parent_filters_;
  event::FdWatch inotify_watch_;
  event::Waker done_waker_;  // the worker finished (Wake() from the worker thread)

  uint64_t change_gen_ = 1;  // bumped by every inotify batch
  uint64_t loaded_gen_ = 0;
  bool policy_failed_ = false;
  std::shared_ptr<const policy::Policy> policy_;
  Error policy_error_;
  std::shared_ptr<const policy::SystemInfo> system_info_;
  std::string system_info_error_;
  bool system_info_failed_ = false;
  std::string file_signature_;
  std::chrono::steady_clock::time_point system_info_at_{};
  size_t reload_count_ = 0;

  std::vector<Waiter> waiters_;
  std::thread worker_;
  bool job_running_ = false;
  std::mutex job_mutex_;
  std::optional<JobResult> job_result_;  // guarded by job_mutex_
};

}  // namespace qrexec::policy_tools
