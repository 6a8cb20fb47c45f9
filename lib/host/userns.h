// Per-domain user namespaces: every domain's ids (root, the user, nobody...)
// map to a private range of host ids that no host account, no /etc/subuid
// range and no other domain uses. Inside, the domain's root is uid 0 with
// capabilities over its own namespaces only; on the host it is an ordinary
// unprivileged uid.
#pragma once

#include <sys/types.h>

#include <string>

#include "base/result.h"
#include "base/unique_fd.h"

namespace qrexec::host {

// Ids per domain: 0..65535 inside, as in a rootless container.
inline constexpr uid_t kIdsPerDomain = 65536;
// Default start of the domains' ranges on the host: 0x70000000, just above
// the range systemd reserves for containers (0x00080000-0x6fffffff,
// systemd's UIDS-GIDS conventions) and below 2^31, which some programs
// mishandle as a negative id. Domain slot N gets [base + N*65536, +65536).
inline constexpr uid_t kDefaultIdBase = 0x70000000;
// Slots 1..kMaxIdSlots-1 (slot 0 is never used: it would start at the base).
inline constexpr uint32_t kMaxIdSlots = 2048;

struct IdRange {
  uid_t first = 0;  // host id of the domain's uid/gid 0
  uid_t count = kIdsPerDomain;
  uid_t ToHost(uid_t inside) const { return first + inside; }
};

IdRange IdRangeOfSlot(uid_t base, uint32_t slot);

// Refuses a base whose domain ranges (all slots) overlap a host account or
// group (/etc/passwd, /etc/group) or a subordinate range in /etc/subuid or
// /etc/subgid, or wrap past 2^32. `etc` is the directory to read ("/etc").
Status CheckIdBase(uid_t base, const std::string& etc = "/etc");

// A new user namespace whose ids 0..count-1 map to `range` (uid and gid),
// with setgroups allowed (the agent sets the user's groups). Needs
// CAP_SETUID/CAP_SETGID on the host. Returns an fd of /proc/PID/ns/user for
// SpawnOptions::join_userns; the namespace lives while an fd or a process
// refers to it.
Result<UniqueFd> MakeUserNamespace(const IdRange& range);

// Re-owns every file under `dir` (not following symlinks) whose owner or
// group lies in [from, from+count) to the same offset in `to`; ids outside
// `from` map to `to`'s nobody (65534). Used when a home changes id range
// (a disposable's copy of its template's home, or a home from before
// per-domain ranges).
Status ShiftOwnership(const std::string& dir, const IdRange& from, const IdRange& to);

}  // namespace qrexec::host
