#include "host/sealed_memfd.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>

namespace qrexec::host {

Result<UniqueFd> NewSealableMemfd(const char* name) {
  UniqueFd fd(::memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING));
  if (!fd.valid()) return ErrnoError("memfd_create");
  return fd;
}

Status SealForReading(int fd) {
  if (::lseek(fd, 0, SEEK_SET) < 0) return ErrnoError("lseek");
  if (::fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) < 0)
    return ErrnoError("seal");
  return Ok();
}

Result<UniqueFd> SealedMemfdWith(const char* name, std::string_view contents) {
  auto fd = NewSealableMemfd(name);
  if (!fd) return fd;
  while (!contents.empty()) {
    ssize_t n = ::write(fd->get(), contents.data(), contents.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return ErrnoError("write memfd");
    contents.remove_prefix(static_cast<size_t>(n));
  }
  if (auto status = SealForReading(fd->get()); !status) return tl::unexpected(status.error());
  return fd;
}

}  // namespace qrexec::host
