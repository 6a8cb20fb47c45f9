#include "policy_store.h"

#include <fmt/core.h>
#include <sys/inotify.h>
#include <sys/stat.h>

#include <cerrno>
#include <filesystem>
#include <map>
#include <set>

#include "base/log.h"
#include "base/sys.h"
#include "policy/qubesd_client.h"

namespace qrexec::policy_tools {
namespace {

constexpr uint32_t kWatchMask = IN_CREATE | IN_DELETE | IN_MODIFY | IN_MOVED_FROM | IN_MOVED_TO |
                                IN_CLOSE_WRITE | IN_ATTRIB | IN_DELETE_SELF | IN_MOVE_SELF |
                                IN_ONLYDIR;

// Adds watches for `root` and every directory below it. A missing root is
// noticed through its parent, whose events then only count for that name.
void WatchTree(int inotify_fd, const std::filesystem::path& root,
               std::map<int, std::set<std::string>>& parent_filters) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_directory(root, ec)) {
    if (root.has_parent_path() && fs::is_directory(root.parent_path(), ec)) {
      int wd = ::inotify_add_watch(inotify_fd, root.parent_path().c_str(), kWatchMask);
      if (wd >= 0) parent_filters[wd].insert(root.filename().string());
    }
    return;
  }
  int wd = ::inotify_add_watch(inotify_fd, root.c_str(), kWatchMask);
  if (wd >= 0) parent_filters.erase(wd);  // now a watched tree: every event counts
  for (fs::recursive_directory_iterator
           it(root, fs::directory_options::follow_directory_symlink, ec),
       end;
       !ec && it != end; it.increment(ec)) {
    if (it->is_directory(ec)) {
      wd = ::inotify_add_watch(inotify_fd, it->path().c_str(), kWatchMask);
      if (wd >= 0) parent_filters.erase(wd);
    }
  }
}

}  // namespace

Result<std::unique_ptr<PolicyStore>> PolicyStore::Create(event::Loop& loop, StoreOptions options) {
  std::unique_ptr<PolicyStore> store(new PolicyStore(loop, std::move(options)));
  if (auto status = store->Init(); !status) return tl::unexpected(status.error());
  return store;
}

PolicyStore::~PolicyStore() {
  if (worker_.joinable()) worker_.join();
}

Status PolicyStore::Init() {
  inotify_.reset(::inotify_init1(IN_NONBLOCK | IN_CLOEXEC));
  if (!inotify_.valid()) return ErrnoError("inotify_init1");
  auto watch = loop_.WatchFd(inotify_.get(), event::Interest::Read(),
                             [this](event::Ready) { DrainInotify(); });
  if (!watch) return tl::unexpected(watch.error());
  inotify_watch_ = std::move(*watch);
  auto done = loop_.AddWaker([this] { OnJobDone(); });
  if (!done) return tl::unexpected(done.error());
  done_waker_ = std::move(*done);
  // The first load, synchronously: nothing is served before it.
  AddWatches();
  Install(RunJob(change_gen_, true, true));
  return Ok();
}

void PolicyStore::DrainInotify() {
  alignas(inotify_event) char buf[16384];
  bool changed = false;
  for (;;) {
    ssize_t n = ::read(inotify_.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    for (ssize_t pos = 0; pos + static_cast<ssize_t>(sizeof(inotify_event)) <= n;) {
      const auto* event = reinterpret_cast<const inotify_event*>(buf + pos);
      pos += static_cast<ssize_t>(sizeof(inotify_event) + event->len);
      auto filter = parent_filters_.find(event->wd);
      if (filter != parent_filters_.end() &&
          (event->len == 0 || !filter->second.contains(std::string(event->name))))
        continue;  // the parent of a missing directory: only that name counts
      changed = true;
    }
  }
  if (changed) {
    ++change_gen_;
    LOG_DEBUG("policy change noticed (generation {})", change_gen_);
    StartJob();  // parse at once, so the next request likely finds it done
  }
}

void PolicyStore::AddWatches() {
  std::vector<std::string> dirs = options_.load.dirs;
  if (dirs.empty()) dirs = {policy::kRuntimePolicyPath, policy::kPolicyPath};
  dirs.push_back(options_.load.legacy_dir);
  for (const auto& dir : dirs) WatchTree(inotify_.get(), dir, parent_filters_);
}

std::string PolicyStore::FileSignature() const {
  struct stat st {};
  if (::stat(options_.system_info_file.c_str(), &st) < 0) return "missing";
  return fmt::format("{}:{}:{}:{}.{}:{}.{}", st.st_dev, st.st_ino, st.st_size, st.st_mtim.tv_sec,
                     st.st_mtim.tv_nsec, st.st_ctim.tv_sec, st.st_ctim.tv_nsec);
}

bool PolicyStore::SystemInfoFresh() {
  if (system_info_failed_) return false;
  if (!options_.system_info_file.empty()) return FileSignature() == file_signature_;
  return std::chrono::steady_clock::now() - system_info_at_ < options_.system_info_ttl;
}

void PolicyStore::Acquire(Ready ready) {
  DrainInotify();
  if (waiters_.empty() && PolicyFresh() && SystemInfoFresh()) {
    ready(MakeSnapshot());
    return;
  }
  waiters_.push_back(Waiter{change_gen_, std::move(ready)});
  StartJob();
}

void PolicyStore::StartJob() {
  if (job_running_) return;  // OnJobDone starts the next one if still needed
  bool reload_policy = !PolicyFresh();
  bool reload_system_info = reload_policy || !SystemInfoFresh();
  uint64_t gen = change_gen_;
  if (reload_policy) AddWatches();  // before the worker reads, so no later change is missed
  if (worker_.joinable()) worker_.join();
  job_running_ = true;
  worker_ = std::thread([this, gen, reload_policy, reload_system_info] {
    JobResult result = RunJob(gen, reload_policy, reload_system_info);
    {
      std::lock_guard lock(job_mutex_);
      job_result_ = std::move(result);
    }
    done_waker_.Wake();
  });
}

PolicyStore::JobResult PolicyStore::RunJob(uint64_t gen, bool reload_policy,
                                           bool reload_system_info) {
  JobResult result;
  result.policy_gen = gen;
  if (reload_policy) {
    result.policy = policy::LoadPolicy(options_.load);
  }
  if (reload_system_info) {
    if (!options_.system_info_file.empty()) {
      result.file_signature = FileSignature();
      result.system_info = policy::SystemInfo::FromFile(options_.system_info_file);
    } else {
      result.system_info = policy::FetchSystemInfo(options_.qubesd_socket);
    }
  }
  return result;
}

void PolicyStore::OnJobDone() {
  std::optional<JobResult> result;
  {
    std::lock_guard lock(job_mutex_);
    result = std::exchange(job_result_, std::nullopt);
  }
  if (!result) return;
  if (worker_.joinable()) worker_.join();
  job_running_ = false;
  Install(std::move(*result));
  DrainInotify();
  // Serve every waiter whose change generation has been loaded; a failed
  // load serves them too (they are denied), but stays outdated.
  auto waiters = std::exchange(waiters_, {});
  Snapshot snapshot = MakeSnapshot();
  for (auto& waiter : waiters) {
    if (waiter.policy_gen <= loaded_gen_)
      waiter.ready(snapshot);
    else
      waiters_.push_back(std::move(waiter));
  }
  // Waiters for a newer change, or a change noticed during the parse.
  if (!waiters_.empty() || loaded_gen_ < change_gen_) StartJob();
}

void PolicyStore::Install(JobResult result) {
  if (result.policy) {
    ++reload_count_;
    loaded_gen_ = result.policy_gen;
    if (*result.policy) {
      policy_ = std::make_shared<const policy::Policy>(std::move(**result.policy));
      policy_error_ = Error{};
      policy_failed_ = false;
      LOG_INFO("policy loaded: {} rules", policy_->size());
    } else {
      policy_.reset();
      policy_error_ = result.policy->error();
      policy_failed_ = true;
      LOG_ERROR("policy failed to load, denying every request: {}", policy_error_.message);
    }
  }
  if (result.system_info) {
    system_info_at_ = std::chrono::steady_clock::now();
    if (result.file_signature) file_signature_ = *result.file_signature;
    if (*result.system_info) {
      system_info_ = std::make_shared<const policy::SystemInfo>(std::move(**result.system_info));
      system_info_error_.clear();
      system_info_failed_ = false;
    } else {
      system_info_.reset();
      system_info_error_ = result.system_info->error().ToString();
      system_info_failed_ = true;
      LOG_ERROR("system info unavailable, denying every request: {}", system_info_error_);
    }
  }
}

Snapshot PolicyStore::MakeSnapshot() const {
  return Snapshot{policy_, policy_error_, system_info_, system_info_error_};
}

}  // namespace qrexec::policy_tools
