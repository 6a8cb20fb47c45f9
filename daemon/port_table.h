// PortTable: the daemon's data-vchan port allocator (qrexec-protocol.md §2.8).
//
// 256 slots, port = 513 + index. A slot remembers the domain it was handed out
// for and is freed only by a release naming both the port and that domain
// (MSG_CONNECTION_TERMINATED). Parity rule, as the reference code behaves:
// peers with a higher domid than our VM get even ports, peers with a lower
// domid odd ports, domain 0 (when our VM is not dom0) any free port in order.
// Pure bookkeeping: no I/O, owned by the Daemon, used from its loop only.
#pragma once

#include <array>
#include <cstdint>
#include <optional>

namespace qrexec::daemon {

class PortTable {
 public:
  explicit PortTable(int own_domid) : own_domid_(own_domid) {}

  // The lowest free port allowed for `connect_domain`, now marked used;
  // nullopt when every allowed slot is taken.
  std::optional<uint32_t> Allocate(int connect_domain);
  // Frees `port` if it is allocated for `connect_domain`; false otherwise
  // (foreign port: the other daemon of the pair allocated it).
  bool Release(uint32_t port, int connect_domain);
  bool InUse(uint32_t port) const;
  void Clear();

 private:
  struct Slot {
    bool used = false;
    int domain = 0;
  };
  int own_domid_;
  std::array<Slot, 256> slots_{};
};

}  // namespace qrexec::daemon
