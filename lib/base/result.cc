#include "base/result.h"

#include <cerrno>
#include <cstring>

namespace qrexec {

const char* ErrorKindName(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::kInternal: return "internal";
    case ErrorKind::kMalformed: return "malformed";
    case ErrorKind::kDisconnected: return "disconnected";
    case ErrorKind::kRefused: return "refused";
    case ErrorKind::kOverloaded: return "overloaded";
    case ErrorKind::kNotFound: return "not found";
    case ErrorKind::kTimedOut: return "timed out";
  }
  return "unknown";
}

std::string Error::ToString() const {
  std::string text = std::string(ErrorKindName(kind)) + ": " + message;
  if (sys_errno != 0) {
    text += ": ";
    text += std::strerror(sys_errno);
  }
  return text;
}

tl::unexpected<Error> ErrnoError(const std::string& context, int saved_errno) {
  ErrorKind kind = ErrorKind::kInternal;
  if (saved_errno == ENOENT) kind = ErrorKind::kNotFound;
  if (saved_errno == EPIPE || saved_errno == ECONNRESET) kind = ErrorKind::kDisconnected;
  if (saved_errno == ETIMEDOUT) kind = ErrorKind::kTimedOut;
  return MakeError(kind, context, saved_errno);
}

tl::unexpected<Error> ErrnoError(const std::string& context) {
  return ErrnoError(context, errno);
}

}  // namespace qrexec
