// HeapTrimmer: gives freed heap memory back to the kernel shortly after a
// burst of work, so that a long-lived process's RSS returns to its idle value
// (glibc's malloc keeps freed memory for reuse; after 1,000 calls in flight a
// daemon would otherwise stay some hundred KiB larger for good).
//
// Touch() after work that allocated; the trim (malloc_trim(0)) runs once,
// `delay` after the first Touch() since the last trim, on the loop's thread.
// So a busy process trims at most once per `delay`, and an idle one never
// wakes up for it. Not movable: the timer's callback points back at it.
#pragma once

#include <chrono>

#include "event/loop.h"

namespace qrexec::event {

class HeapTrimmer {
 public:
  static constexpr std::chrono::milliseconds kDefaultDelay{200};

  explicit HeapTrimmer(Loop& loop, std::chrono::milliseconds delay = kDefaultDelay);
  HeapTrimmer(const HeapTrimmer&) = delete;
  HeapTrimmer& operator=(const HeapTrimmer&) = delete;

  void Touch();
  int trims() const { return trims_; }  // for tests

 private:
  void Trim();

  std::chrono::milliseconds delay_;
  Timer timer_;
  bool armed_ = false;
  int trims_ = 0;
};

}  // namespace qrexec::event
