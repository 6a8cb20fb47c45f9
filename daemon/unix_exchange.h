// UnixExchange: one request/answer conversation over a Unix stream socket,
// run by the daemon's event loop: connect (non-blocking), write the request,
// optionally half-close, read the answer until EOF. Used for policy.sock
// (§5.2) and the qubesd socket (§2.1).
//
// The callback runs exactly once, always from the loop (never from inside
// Start), with the whole answer or an error: kNotFound/kDisconnected/
// kInternal when the socket cannot be reached, kOverloaded when the answer
// exceeds `reply_limit` or the server's backlog stays full, kTimedOut when
// `timeout` passes. Destroying the object cancels everything (no callback).
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "base/result.h"
#include "base/unique_fd.h"
#include "event/loop.h"

namespace qrexec::daemon {

class UnixExchange {
 public:
  using Callback = std::function<void(Result<std::string>)>;
  struct Options {
    std::string path;
    std::string request;
    bool half_close = false;  // shutdown(SHUT_WR) after the request
    size_t reply_limit = 4096;
    std::optional<std::chrono::milliseconds> timeout;  // none = wait forever
  };

  static Result<std::unique_ptr<UnixExchange>> Start(event::Loop& loop, Options options,
                                                     Callback callback);
  ~UnixExchange() = default;
  UnixExchange(const UnixExchange&) = delete;
  UnixExchange& operator=(const UnixExchange&) = delete;

 private:
  UnixExchange(event::Loop& loop, Options options, Callback callback);
  void TryConnect();
  void OnReady(event::Ready ready);
  void WriteSome();
  void ReadSome();
  void Finish(Result<std::string> result);

  event::Loop& loop_;
  Options options_;
  Callback callback_;
  UniqueFd fd_;
  event::FdWatch watch_;
  event::Timer timer_;  // connect retries, and the first (async) attempt
  event::Timer deadline_;
  int connect_attempts_ = 0;
  size_t written_ = 0;
  std::string answer_;
  bool done_ = false;
};

}  // namespace qrexec::daemon
