// The vchan seam (architecture.md §3): how a domain opens a channel to
// another domain. Every backend hands back a connected stream socket fd, so
// the protocol code above never knows which backend it runs on.
//
// Roles follow Qubes: for a given (server domain, client domain, port) the
// *server* offers the channel and the *client* joins it. Control channels use
// port 512; data channels 513-768.
//
// Backends (chosen at run time by MakeTransportFromEnv):
//  * socket: Qubes' vchan-socket convention. The server binds
//    $VCHAN_SOCKET_DIR/vchan.<server>.<client>.<port>.sock and accepts one
//    connection; the client connects to it (retrying until it exists). Own
//    domain id from $VCHAN_DOMAIN. Raw byte stream, no handshake. A test rig,
//    not a security boundary.
//  * broker: the embedded host. Each domain has one Unix socket to
//    qrexec-host ($QREXEC_BROKER_SOCKET); the host pairs a server request with
//    the matching client request and passes each side one end of a
//    socketpair (SCM_RIGHTS). Identity comes from the socket the request
//    arrived on. Wire format in docs/broker-protocol.md and broker_wire.h.
//
// Every channel fd handed back is a connected SOCK_STREAM socket, CLOEXEC,
// in blocking mode (callers switch it to non-blocking as they need), owned by
// the caller. Errors: kRefused for a channel to the own domain (checked
// locally in both backends, like Xen's vchan), kTimedOut when the deadline
// passes, kOverloaded when the channel is already offered (socket: a live
// listener on the file; broker: EADDRINUSE/EAGAIN), kNotFound (broker:
// ENOENT), kDisconnected (broker went away), kMalformed (broker broke its
// protocol), kInternal for OS failures. Calls are blocking and not
// thread-safe; one Transport per process is enough.
#pragma once

#include <memory>
#include <string>

#include "base/result.h"
#include "base/sys.h"
#include "base/unique_fd.h"

namespace qrexec::vchan {

// A server-side channel that has been offered but not yet joined. Event-loop
// code watches fd() for readability, then calls Finish().
class PendingServer {
 public:
  virtual ~PendingServer() = default;
  // Becomes readable when the peer has joined (or the offer failed).
  virtual int fd() const = 0;
  // Completes the channel; call once fd() is readable (or to block until the
  // deadline). kTimedOut when the deadline passes first; the offer then
  // stays pending and Finish may be called again. Any other result (the
  // channel or another error) ends the offer: call Finish at most once more.
  // Destroying a PendingServer withdraws the offer (socket: the listener is
  // closed and its file unlinked; broker: the request connection is closed).
  virtual Result<UniqueFd> Finish(const sys::Deadline& deadline) = 0;
};

class Transport {
 public:
  virtual ~Transport() = default;
  // This domain's id (0 for dom0).
  virtual int own_domain() const = 0;
  // Offers a channel to `remote_domain` on `port` (non-blocking). Fails at
  // once if the same channel is already offered, or remote == own domain.
  virtual Result<std::unique_ptr<PendingServer>> Offer(int remote_domain, int port) = 0;
  // Offer + Finish: blocks until the peer joins or the deadline passes.
  Result<UniqueFd> Serve(int remote_domain, int port, const sys::Deadline& deadline);
  // Joins the channel that `remote_domain` offers (or will offer) on `port`;
  // blocks until it exists and is joined, or the deadline passes. Socket
  // backend: retries every 10 ms while the file is missing (ENOENT) or
  // nobody listens (ECONNREFUSED).
  virtual Result<UniqueFd> Connect(int remote_domain, int port, const sys::Deadline& deadline) = 0;

  // Offers made on behalf of another local process (the agent for
  // qrexec-client-vm). With the broker, only the domain's root may ask the
  // host for channels, so the agent offers the data channel of an outgoing
  // call itself and passes the request's descriptor to the caller, who
  // adopts it and waits for the peer there. The socket backend cannot hand
  // an offer over: the caller offers itself.
  virtual bool hands_over_offers() const { return false; }
  // Like Offer, but returns the descriptor that AdoptOffer turns back into
  // a PendingServer (in this or another process).
  virtual Result<UniqueFd> OfferToHandOver(int remote_domain, int port);
  virtual Result<std::unique_ptr<PendingServer>> AdoptOffer(UniqueFd handed_over);
};

// socket backend rooted at `dir` for domain `own_domain`.
std::unique_ptr<Transport> MakeSocketTransport(std::string dir, int own_domain);
// broker backend over the host socket at `broker_socket`.
std::unique_ptr<Transport> MakeBrokerTransport(std::string broker_socket, int own_domain);

// Picks the backend from the environment: $QREXEC_BROKER_SOCKET set -> broker;
// otherwise socket in $VCHAN_SOCKET_DIR (default /var/run/vchan). The own
// domain id comes from $VCHAN_DOMAIN (default 0; kMalformed if it is not a
// non-negative decimal number).
Result<std::unique_ptr<Transport>> MakeTransportFromEnv();

}  // namespace qrexec::vchan
