// Sealed memory files: what the host hands to bwrap by descriptor (the
// seccomp filter, /etc/passwd and /etc/group) instead of by a host path, so
// no state-directory path shows in a domain's mountinfo and nothing on disk
// can be changed between writing and binding.
#pragma once

#include <string_view>

#include "base/result.h"
#include "base/unique_fd.h"

namespace qrexec::host {

// An empty memfd that can be sealed (close-on-exec).
Result<UniqueFd> NewSealableMemfd(const char* name);

// Seals `fd` against any change in size or content and rewinds it to 0,
// ready for a reader that starts at the current offset (bwrap does).
Status SealForReading(int fd);

// A sealed memfd holding `contents`, positioned at 0.
Result<UniqueFd> SealedMemfdWith(const char* name, std::string_view contents);

}  // namespace qrexec::host
