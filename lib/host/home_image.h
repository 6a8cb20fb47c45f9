// A domain's home with a size limit: an ext4 image file per domain, mounted
// through a loop device at the home's directory while the host runs.
//
// Why an image: it bounds what a domain can write (the host's disk is not
// the limit), it works on any host filesystem (project quotas need one
// mounted with them), and the domain's home is the root of its own
// filesystem, so no host path shows in the domain's mountinfo. The image
// is never given to the domain as a device: the domain only reaches it
// through the kernel's ext4, so it cannot craft the filesystem's bytes.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>

#include "base/result.h"

namespace qrexec::host {

// Makes `image` (sparse, `bytes` long) if it does not exist, and mounts it
// at `dir` (nosuid, nodev) unless something is mounted there already (a
// host that did not stop cleanly). A fresh image's root belongs to
// `owner`. A `dir` that holds files but has no image yet (a home from
// before images) is copied into the new image first.
Status MountHomeImage(const std::string& image, const std::string& dir, uint64_t bytes, uid_t owner);

// Unmounts `dir` if something is mounted there (the loop device goes with
// it). Lazy when busy.
void UnmountHome(const std::string& dir);

// Whether `dir` is a mount point (in our mount namespace).
bool IsMountPoint(const std::string& dir);

}  // namespace qrexec::host
