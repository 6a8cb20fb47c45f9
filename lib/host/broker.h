// The host side of the broker transport (docs/broker-protocol.md).
//
// One listening Unix socket per domain (dom0 included, as domain 0). The only
// identity the broker trusts is which listening socket a request arrived on.
// An offer (vchan server) by S for (C, P) is paired with a connect (vchan
// client) by C for (S, P); both then get one end of a fresh socketpair in
// SCM_RIGHTS. The broker never reads or writes call data.
#pragma once

#include <sys/types.h>

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <tuple>

#include "base/result.h"
#include "base/sys.h"
#include "base/unique_fd.h"
#include "event/loop.h"
#include "vchan/broker_wire.h"

namespace qrexec::host {

// The wire format is shared with the domain side (lib/vchan).
using vchan::BrokerOp;
using vchan::BrokerRequest;
using vchan::EncodeBrokerRequest;
using vchan::kBrokerMagic;
using vchan::kBrokerRequestSize;
using vchan::kBrokerStatusSize;
inline constexpr size_t kMaxBrokerPendingPerDomain = 1024;

// Checks size, magic and op only; the rules about domains and ports need the
// broker's state and are applied by Broker.
Result<BrokerRequest> DecodeBrokerRequest(std::span<const std::byte> untrusted_request);

// Blocking client side of one request (tests and tools; the vchan broker
// backend has its own). Returns the channel fd, or an error whose sys_errno
// is the broker's status.
Result<UniqueFd> BrokerRequestChannel(const std::string& broker_socket, const BrokerRequest& request,
                                      const sys::Deadline& deadline);

class Broker {
 public:
  struct Options {
    size_t max_pending_per_domain = kMaxBrokerPendingPerDomain;
    // Time a new connection has to deliver its 16 bytes.
    std::chrono::milliseconds request_timeout{10000};
  };

  explicit Broker(event::Loop& loop);
  Broker(event::Loop& loop, Options options);
  ~Broker();
  Broker(const Broker&) = delete;
  Broker& operator=(const Broker&) = delete;

  // Listens for `domain` (0 = dom0) at `socket_path` (mode 0600). A domain
  // must be added before others can name it. With `root_uid` (the host uid
  // of the domain's root), only processes with that uid may join channels
  // others offered (the service side of a call) or use the control port;
  // the domain's other users may only offer channels (their own outgoing
  // calls), so an unprivileged user cannot take over a call meant for the
  // agent (see docs/threat-model.md).
  Status AddDomain(uint32_t domain, const std::string& name, const std::string& socket_path,
                   std::optional<uid_t> root_uid = std::nullopt);
  // Closes the domain's socket and ends every request it made or that waits
  // for it (those get ENOENT).
  void RemoveDomain(uint32_t domain);
  bool HasDomain(uint32_t domain) const { return domains_.count(domain) != 0; }

  // Requests accepted from `domain` and not yet answered.
  size_t pending_count(uint32_t domain) const;
  // Channels handed out so far.
  uint64_t paired_count() const { return paired_; }

 private:
  // (server domain, client domain, port)
  using Key = std::tuple<uint32_t, uint32_t, uint32_t>;

  struct DomainEntry {
    std::string name;
    std::string socket_path;
    std::optional<uid_t> root_uid;
    UniqueFd listen_fd;
    event::FdWatch watch;  // after listen_fd: unregistered before it closes
    size_t pending = 0;
  };
  struct Connection {
    uint32_t domain = 0;
    bool privileged = true;  // its peer is the domain's root (or no root_uid is set)
    UniqueFd fd;
    std::array<std::byte, kBrokerRequestSize> buffer{};
    size_t have = 0;
    bool waiting = false;  // decoded, valid, waiting for its peer
    BrokerOp op = BrokerOp::kOffer;
    Key key{};
    event::FdWatch watch;  // after fd: unregistered before it closes
    event::Timer timer;
  };

  void OnAcceptable(uint32_t domain);
  void OnReadable(uint64_t id);
  void OnRequest(uint64_t id, const BrokerRequest& request);
  // Sends `status` (and `channel` when status is 0), then forgets the connection.
  void Answer(uint64_t id, uint32_t status, UniqueFd channel = {});
  void Drop(uint64_t id);
  const std::string& NameOf(uint32_t domain) const;

  event::Loop& loop_;
  Options options_;
  std::map<uint32_t, DomainEntry> domains_;
  std::map<uint64_t, Connection> connections_;
  std::map<Key, uint64_t> offers_;
  std::map<Key, uint64_t> connects_;
  uint64_t next_id_ = 1;
  uint64_t paired_ = 0;
};

}  // namespace qrexec::host
