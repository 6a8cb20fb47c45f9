#include "event/heap_trimmer.h"

#include <malloc.h>

#include "base/log.h"

namespace qrexec::event {

// The timer is created up front so that the process's descriptor count at
// idle already includes it.
HeapTrimmer::HeapTrimmer(Loop& loop, std::chrono::milliseconds delay) : delay_(delay) {
  auto timer = loop.AddTimer([this] { Trim(); });
  if (!timer) {
    LOG_WARNING("no heap-trim timer: {}", timer.error().ToString());
    return;
  }
  timer_ = std::move(*timer);
}

void HeapTrimmer::Touch() {
  if (armed_ || !timer_.active()) return;
  if (auto armed = timer_.Arm(delay_); !armed) {
    LOG_WARNING("cannot arm the heap-trim timer: {}", armed.error().ToString());
    return;
  }
  armed_ = true;
}

void HeapTrimmer::Trim() {
  armed_ = false;
  ::malloc_trim(0);
  ++trims_;
}

}  // namespace qrexec::event
