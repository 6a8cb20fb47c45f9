// PolicyQuery: asks for the policy decision of one call without blocking the
// daemon's loop (qrexec-protocol.md §5.1, §5.2).
//
// Normal path: policy.sock (the request lines of §5.2, answer read to EOF,
// at most 4095 bytes). If the socket cannot be reached or its answer is
// malformed, the fallback program is spawned as `PROG -- SOURCE TARGET
// SERVICE+ARG` with its stdout on a pipe; it must exit 0 and print a valid
// answer. The requested source is not passed on that path (as the
// reference). Anything else is an error; the caller refuses the call.
//
// The callback runs once, from the loop. Destroying the query cancels it
// (a fallback child still running is killed and reaped).
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "base/result.h"
#include "daemon/policy_answer.h"
#include "daemon/unix_exchange.h"
#include "event/loop.h"
#include "exec/child_process.h"

namespace qrexec::daemon {

struct PolicyRequest {
  std::string source;                           // our VM's name
  std::optional<std::string> requested_source;  // MSG_TRIGGER_SERVICE4 only
  std::string intended_target;                  // sanitized
  std::string service_and_arg;                  // sanitized
};

// The request text of §5.2, blank line included.
std::string FormatPolicyRequest(const PolicyRequest& request);

class PolicyQuery {
 public:
  using Callback = std::function<void(Result<PolicyAnswer>)>;
  struct Paths {
    std::string policy_socket;
    std::string policy_program;
  };

  static Result<std::unique_ptr<PolicyQuery>> Start(event::Loop& loop, const Paths& paths,
                                                    PolicyRequest request, Callback callback);
  ~PolicyQuery();
  PolicyQuery(const PolicyQuery&) = delete;
  PolicyQuery& operator=(const PolicyQuery&) = delete;

 private:
  PolicyQuery(event::Loop& loop, const Paths& paths, PolicyRequest request, Callback callback);
  void OnSocketAnswer(Result<std::string> answer);
  void StartFallback(const std::string& why);
  void OnFallbackOutput();
  void OnFallbackExit();
  void MaybeFinishFallback();
  void Finish(Result<PolicyAnswer> result);

  event::Loop& loop_;
  Paths paths_;
  PolicyRequest request_;
  Callback callback_;
  std::unique_ptr<UnixExchange> exchange_;
  std::optional<exec::ChildProcess> child_;
  UniqueFd child_stdout_;
  event::FdWatch stdout_watch_;
  event::FdWatch child_watch_;  // on the pidfd
  std::string output_;
  bool output_done_ = false;
  std::optional<int> exit_code_;
  bool done_ = false;
};

}  // namespace qrexec::daemon
