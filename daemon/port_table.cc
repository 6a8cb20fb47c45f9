#include "daemon/port_table.h"

#include "base/limits.h"

namespace qrexec::daemon {

std::optional<uint32_t> PortTable::Allocate(int connect_domain) {
  size_t first = 0;
  size_t step = 1;
  if (connect_domain != 0) {
    // Index 0 is port 513 (odd). Higher peers: even ports = odd indexes.
    first = connect_domain > own_domid_ ? 1 : 0;
    step = 2;
  }
  for (size_t i = first; i < slots_.size(); i += step) {
    if (slots_[i].used) continue;
    slots_[i] = Slot{true, connect_domain};
    return limits::kFirstDataPort + static_cast<uint32_t>(i);
  }
  return std::nullopt;
}

bool PortTable::Release(uint32_t port, int connect_domain) {
  if (port < limits::kFirstDataPort || port > limits::kLastDataPort) return false;
  Slot& slot = slots_[port - limits::kFirstDataPort];
  if (!slot.used || slot.domain != connect_domain) return false;
  slot = Slot{};
  return true;
}

bool PortTable::InUse(uint32_t port) const {
  if (port < limits::kFirstDataPort || port > limits::kLastDataPort) return false;
  return slots_[port - limits::kFirstDataPort].used;
}

void PortTable::Clear() { slots_.fill(Slot{}); }

}  // namespace qrexec::daemon
