// Malloc tuning for long-lived dom0 processes (qrexec-daemon, the policy
// daemon): no per-thread cache (tcache), so that the heap returns to its idle
// size after a burst of calls.
//
// Why: glibc keeps up to 7 freed chunks of every small size class (up to
// 1032 bytes) in a per-thread cache that lives outside the arena's free
// lists. malloc_trim() (event::HeapTrimmer) cannot see those chunks, so the
// pages they sit on stay resident; after 1,000 calls in flight the ~65 KiB
// of cached chunks are scattered over the heap and pin ~200-250 KiB of it
// (measured with mallinfo2 and /proc/self/smaps in qrexec-daemon; with the
// cache off its RssAnon returns to within a few KiB of idle, at no
// measurable cost in call latency: little is allocated per call).
//
// The cache can only be set before the process starts (GLIBC_TUNABLES is
// read by the dynamic loader), so main() calls ReexecWithoutMallocCache()
// first: it re-executes the program once with glibc.malloc.tcache_count=0
// added to GLIBC_TUNABLES, and the re-executed process puts GLIBC_TUNABLES
// back as it was, so that the programs it starts (dom0 services, the policy
// program) do not inherit the setting. A tcache_count already present in
// GLIBC_TUNABLES is respected (that is also the way to keep the cache).
// Not done in sanitizer builds, whose allocator is not glibc's.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace qrexec::sys {

// The tunable added to GLIBC_TUNABLES.
inline constexpr std::string_view kNoMallocCacheTunable = "glibc.malloc.tcache_count=0";
// Set in the re-executed process's environment: "-" when GLIBC_TUNABLES
// was unset, "+VALUE" when it was VALUE.
inline constexpr const char* kSavedTunablesVariable = "QREXEC_SAVED_GLIBC_TUNABLES";

// GLIBC_TUNABLES with the cache switched off, given its current value
// (nullopt = unset); nullopt when it already sets tcache_count.
std::optional<std::string> TunablesWithoutMallocCache(std::optional<std::string_view> current);

// Encodes/decodes the kSavedTunablesVariable value.
std::string EncodeSavedTunables(std::optional<std::string_view> original);
// nullopt: GLIBC_TUNABLES was unset. An unknown encoding decodes as unset.
std::optional<std::string> DecodeSavedTunables(std::string_view saved);

// Called first thing in main(), before any thread or descriptor is created.
// Returns only when no re-exec is needed or it failed (then the daemon runs
// with glibc's defaults); in the re-executed process, restores the
// environment and returns.
void ReexecWithoutMallocCache(char** argv);

}  // namespace qrexec::sys
