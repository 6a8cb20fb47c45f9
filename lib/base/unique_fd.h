// UniqueFd: the only type that owns a file descriptor.
//
// Move-only. A raw `int` anywhere else in the code base means "borrowed for the
// duration of this call". A function that takes ownership takes UniqueFd by
// value. There is deliberately no conversion to int or bool: ask get() or
// valid().
#pragma once

#include <unistd.h>

#include <utility>

namespace qrexec {

class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  ~UniqueFd() { reset(); }

  UniqueFd(UniqueFd&& other) noexcept : fd_(other.release()) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    if (this != &other) reset(other.release());
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }

  // Gives up ownership; the caller becomes responsible for closing.
  [[nodiscard]] int release() { return std::exchange(fd_, -1); }

  // Closes the current descriptor (never retried: close() must not be retried
  // on EINTR on Linux) and takes `fd` instead.
  void reset(int fd = -1) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

}  // namespace qrexec
