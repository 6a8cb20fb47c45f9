// Result<T>: the value-or-error type used at every boundary that touches a
// peer or the operating system (style.md habit 8).
//
// The error carries a small closed set of kinds so that callers can tell a bad
// peer (Malformed) from a vanished one (Disconnected), a policy refusal
// (Refused), resource exhaustion (Overloaded), a missing thing (NotFound), a
// time-out (TimedOut) and our own bugs or OS failures (Internal).
#pragma once

#include <string>
#include <utility>

#include <tl/expected.hpp>

namespace qrexec {

enum class ErrorKind {
  kInternal,      // OS failure or a bug on our side
  kMalformed,     // the peer broke the protocol or sent invalid input
  kDisconnected,  // the peer went away
  kRefused,       // policy or a permission check said no
  kOverloaded,    // a named limit was reached
  kNotFound,      // a file, service, domain... does not exist
  kTimedOut,      // a deadline passed
};

const char* ErrorKindName(ErrorKind kind);

struct Error {
  ErrorKind kind = ErrorKind::kInternal;
  std::string message;
  int sys_errno = 0;  // errno when the error came from a system call, else 0

  // "kind: message" (plus strerror when sys_errno is set), for logs.
  std::string ToString() const;
};

template <class T>
using Result = tl::expected<T, Error>;

// Result<void> is spelled Status.
using Status = tl::expected<void, Error>;

inline tl::unexpected<Error> MakeError(ErrorKind kind, std::string message, int sys_errno = 0) {
  return tl::unexpected<Error>(Error{kind, std::move(message), sys_errno});
}

// An Internal error from the current errno, with a short context ("socket").
tl::unexpected<Error> ErrnoError(const std::string& context);
tl::unexpected<Error> ErrnoError(const std::string& context, int saved_errno);

inline Status Ok() { return {}; }

}  // namespace qrexec
