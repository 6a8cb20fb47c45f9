#include "daemon/policy_query.h"

#include <cerrno>

#include "base/escape_filter.h"
#include "base/limits.h"
#include "base/log.h"
#include "base/sys.h"

extern char** environ;

namespace qrexec::daemon {

std::string FormatPolicyRequest(const PolicyRequest& request) {
  std::string text = "source=" + request.source + "\n";
  if (request.requested_source) text += "requested_source=" + *request.requested_source + "\n";
  text += "intended_target=" + request.intended_target + "\n";
  text += "service_and_arg=" + request.service_and_arg + "\n\n";
  return text;
}

Result<std::unique_ptr<PolicyQuery>> PolicyQuery::Start(event::Loop& loop, const Paths& paths,
                                                        PolicyRequest request, Callback callback) {
  std::unique_ptr<PolicyQuery> self(
      new PolicyQuery(loop, paths, std::move(request), std::move(callback)));
  PolicyQuery* raw = self.get();
  UnixExchange::Options options{.path = paths.policy_socket,
                                .request = FormatPolicyRequest(raw->request_),
                                .half_close = false,
                                .reply_limit = limits::kMaxPolicyResponse,
                                .timeout = std::nullopt};
  auto exchange = UnixExchange::Start(loop, std::move(options), [raw](Result<std::string> answer) {
    raw->OnSocketAnswer(std::move(answer));
  });
  if (!exchange) return tl::unexpected(exchange.error());
  raw->exchange_ = std::move(*exchange);
  return self;
}

PolicyQuery::PolicyQuery(event::Loop& loop, const Paths& paths, PolicyRequest request,
                         Callback callback)
    : loop_(loop), paths_(paths), request_(std::move(request)), callback_(std::move(callback)) {}

PolicyQuery::~PolicyQuery() = default;  // ~ChildProcess kills and reaps a running fallback

void PolicyQuery::OnSocketAnswer(Result<std::string> answer) {
  exchange_.reset();
  if (!answer) {
    StartFallback("policy daemon unreachable: " + answer.error().ToString());
    return;
  }
  auto parsed = ParsePolicyAnswer(*answer);
  if (!parsed) {
    StartFallback("policy daemon answer: " + parsed.error().ToString());
    return;
  }
  Finish(std::move(parsed));
}

void PolicyQuery::StartFallback(const std::string& why) {
  LOG_WARNING("{}; falling back to {}", why, paths_.policy_program);
  exec::SpawnSpec spec;
  spec.path = paths_.policy_program;
  spec.argv = {paths_.policy_program, "--", request_.source, request_.intended_target,
               request_.service_and_arg};
  for (char** env = environ; *env; ++env) spec.env.emplace_back(*env);
  spec.stdin_io = exec::Stdio::Null();
  spec.stdout_io = exec::Stdio::Pipe();
  spec.stderr_io = exec::Stdio::Inherit();
  spec.new_session = false;
  auto child = exec::ChildProcess::Spawn(spec);
  if (!child) {
    Finish(
        MakeError(ErrorKind::kInternal, "cannot run policy program: " + child.error().ToString()));
    return;
  }
  child_.emplace(std::move(*child));
  child_stdout_ = std::move(child_->stdout_fd());
  (void)sys::SetNonBlocking(child_stdout_.get(), true);
  auto watch = loop_.WatchFd(child_stdout_.get(), event::Interest::Read(),
                             [this](event::Ready) { OnFallbackOutput(); });
  auto exit_watch = loop_.WatchFd(child_->pidfd(), event::Interest::Read(),
                                  [this](event::Ready) { OnFallbackExit(); });
  if (!watch || !exit_watch) {
    Finish(MakeError(ErrorKind::kInternal, "cannot watch the policy program"));
    return;
  }
  stdout_watch_ = std::move(*watch);
  child_watch_ = std::move(*exit_watch);
}

void PolicyQuery::OnFallbackOutput() {
  char buf[4096];
  auto got = sys::ReadSome(child_stdout_.get(), std::as_writable_bytes(std::span(buf)));
  if (!got && got.error().sys_errno == EAGAIN) return;
  if (!got || *got == 0) {
    output_done_ = true;
    stdout_watch_.Reset();
    child_stdout_.reset();
    MaybeFinishFallback();
    return;
  }
  output_.append(buf, *got);
  if (output_.size() > limits::kMaxPolicyResponse)
    Finish(MakeError(ErrorKind::kMalformed, "policy program output too long"));
}

void PolicyQuery::OnFallbackExit() {
  auto status = child_->TryWait();
  if (status && !*status) return;  // not yet
  child_watch_.Reset();
  exit_code_ = status ? exec::QrexecExitCode(**status) : exec::kExitProblem;
  MaybeFinishFallback();
}

void PolicyQuery::MaybeFinishFallback() {
  if (!output_done_ || !exit_code_) return;
  if (*exit_code_ != 0) {
    Finish(MakeError(ErrorKind::kRefused,
                     "policy program exited with " + std::to_string(*exit_code_)));
    return;
  }
  Finish(ParsePolicyAnswer(output_));
}

void PolicyQuery::Finish(Result<PolicyAnswer> result) {
  if (done_) return;
  done_ = true;
  stdout_watch_.Reset();
  child_watch_.Reset();
  auto callback = std::move(callback_);
  callback(std::move(result));  // may destroy *this
}

}  // namespace qrexec::daemon
