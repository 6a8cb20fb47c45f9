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
#include <set>
#include <span>
#include <string>
#include <tuple>
#include <utility>

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

// Defaults of the broker's bounds (docs/broker-protocol.md, "Bounds"). Every
// waiting request holds one descriptor in the host process, so what one
// domain may hold must stay far below the host's descriptor budget, with
// room for every other domain.
//  * 128 per domain: on the embedded host a request waits only while its peer
//    is on its way (both ends are local processes that ask within
//    milliseconds of each other once a call is set up), so even a domain with
//    a hundred calls starting at once stays below it. A full domain costs the
//    host 128 descriptors: qrexec-host raises its soft limit to the hard one
//    at start (524,288 under systemd), so a few hundred domains fit.
//  * 30 s for an unmatched request: far beyond any legitimate wait on one
//    machine (the target is started before the caller is told to offer its
//    end), short enough that requests nobody will match do not pile up. The
//    agent offers its control channel again when its offer expires.
inline constexpr size_t kMaxBrokerPendingPerDomain = 128;
inline constexpr std::chrono::milliseconds kBrokerPendingTimeout{30000};

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
    // Requests waiting for their peer counted against one domain at a time
    // (see pending_count), and separately connections accepted on its socket
    // whose request is not read yet; more of either get EAGAIN at once.
    size_t max_pending_per_domain = kMaxBrokerPendingPerDomain;
    // Time a new connection has to deliver its 16 bytes.
    std::chrono::milliseconds request_timeout{10000};
    // Time a valid request waits for its peer before it gets ETIMEDOUT.
    std::chrono::milliseconds pending_timeout = kBrokerPendingTimeout;
  };

  explicit Broker(event::Loop& loop);
  Broker(event::Loop& loop, Options options);
  ~Broker();
  Broker(const Broker&) = delete;
  Broker& operator=(const Broker&) = delete;

  // Listens for `domain` (0 = dom0) at `socket_path` (mode 0600). A domain
  // must be added before others can name it. With `root_uid` (the host uid
  // of the domain's root), only processes with that uid may ask for
  // channels at all: the agent offers the data channel of each outgoing call
  // and hands it to its caller, so an unprivileged user can neither take
  // over a call meant for the agent nor offer another user's channel first
  // (see docs/threat-model.md).
  Status AddDomain(uint32_t domain, const std::string& name, const std::string& socket_path,
                   std::optional<uid_t> root_uid = std::nullopt);
  // Closes the domain's socket and ends every request it made or that waits
  // for it (those get ENOENT).
  void RemoveDomain(uint32_t domain);
  bool HasDomain(uint32_t domain) const { return domains_.count(domain) != 0; }

  // Connections accepted on `domain`'s socket whose request is not read yet,
  // plus the requests waiting for their peer that count against `domain`:
  // its own, and those of dom0 waiting for `domain` (dom0 asks on behalf of
  // that domain's calls; counting them against dom0 would let one domain use
  // up dom0's share and so stop every other domain's calls). A request that
  // completes a pair is answered at once and never waits, so a domain at its
  // limit can still answer what waits for it.
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
    size_t unread = 0;     // connections on this socket still sending their request
    size_t waiting = 0;    // requests waiting for their peer counted against this domain
    bool warned_full = false;  // logged reaching a limit; cleared when a request ends
  };
  static constexpr uint32_t kNotCharged = UINT32_MAX;
  struct Connection {
    uint32_t domain = 0;             // whose socket it came in on: its identity
    bool privileged = true;          // its peer is the domain's root (or no root_uid is set)
    bool unread = true;              // counted in domains_[domain].unread
    uint32_t charged = kNotCharged;  // waiting: whose `waiting` count it is in
    UniqueFd fd;
    std::array<std::byte, kBrokerRequestSize> buffer{};
    size_t have = 0;
    bool waiting = false;  // decoded, valid, waiting for its peer
    BrokerOp op = BrokerOp::kOffer;
    Key key{};
    sys::Clock::time_point deadline;  // its entry in deadlines_
    event::FdWatch watch;             // after fd: unregistered before it closes
  };

  void OnAcceptable(uint32_t domain);
  void OnReadable(uint64_t id);
  void OnRequest(uint64_t id, const BrokerRequest& request);
  // Sends `status` (and `channel` when status is 0), then forgets the connection.
  void Answer(uint64_t id, uint32_t status, UniqueFd channel = {});
  void Drop(uint64_t id);
  // Counts a waiting request against `domain`; false when it is at its limit.
  bool Charge(uint32_t domain);
  void WarnFull(DomainEntry& entry, const char* what);
  void NoLongerUnread(Connection& connection);
  // One timer for every connection (not a timerfd each: descriptors are
  // what the bounds protect): armed for the earliest deadline.
  void SetDeadline(uint64_t id, Connection& connection, std::chrono::milliseconds after);
  void ArmExpiryTimer();
  void OnExpiry();
  const std::string& NameOf(uint32_t domain) const;

  event::Loop& loop_;
  Options options_;
  std::map<uint32_t, DomainEntry> domains_;
  std::map<uint64_t, Connection> connections_;
  std::map<Key, uint64_t> offers_;
  std::map<Key, uint64_t> connects_;
  std::set<std::pair<sys::Clock::time_point, uint64_t>> deadlines_;  // (deadline, connection id)
  event::Timer expiry_timer_;  // created with the first domain
  bool expiry_armed_ = false;
  sys::Clock::time_point expiry_at_;  // when expiry_timer_ fires, if armed
  uint64_t next_id_ = 1;
  uint64_t paired_ = 0;
};

}  // namespace qrexec::host
