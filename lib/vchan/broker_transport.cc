// The broker backend (docs/broker-protocol.md), see transport.h.
#include <cerrno>
#include <cstring>

#include "vchan/broker_wire.h"
#include "vchan/transport.h"

namespace qrexec::vchan {
namespace {

Error StatusError(uint32_t status) {
  const int err = static_cast<int>(status);
  ErrorKind kind = ErrorKind::kInternal;
  switch (err) {
    case EADDRINUSE:
    case EAGAIN:
      kind = ErrorKind::kOverloaded;
      break;
    case EINVAL:
      kind = ErrorKind::kRefused;
      break;
    case ENOENT:
      kind = ErrorKind::kNotFound;
      break;
    default:
      break;
  }
  return Error{kind, "broker refused the channel", err};
}

// Reads the 4-byte status and, on status 0, the descriptor that came with it.
Result<UniqueFd> ReadAnswer(int conn, const sys::Deadline& deadline) {
  std::array<std::byte, kBrokerStatusSize> status_bytes{};
  size_t got = 0;
  UniqueFd channel;
  while (got < status_bytes.size()) {
    if (auto w = sys::WaitReadable(conn, deadline); !w) {
      if (w.error().kind == ErrorKind::kTimedOut)
        return MakeError(ErrorKind::kTimedOut, "the broker did not pair the channel in time");
      return tl::unexpected(w.error());
    }
    auto received = sys::RecvWithFd(conn, std::span(status_bytes).subspan(got));
    if (!received && received.error().sys_errno == EAGAIN) continue;
    if (!received) return tl::unexpected(received.error());
    if (received->first == 0)
      return MakeError(ErrorKind::kDisconnected, "the broker closed the request");
    got += received->first;
    if (received->second.valid()) {
      if (channel.valid())
        return MakeError(ErrorKind::kMalformed, "the broker sent two descriptors");
      channel = std::move(received->second);
    }
  }
  uint32_t status = DecodeBrokerStatus(status_bytes);
  if (status != 0) return tl::unexpected(StatusError(status));
  if (!channel.valid()) return MakeError(ErrorKind::kMalformed, "the broker sent no descriptor");
  if (!sys::IsStreamSocket(channel.get()))
    return MakeError(ErrorKind::kMalformed, "the broker sent something else than a stream socket");
  return channel;
}

class BrokerPendingServer final : public PendingServer {
 public:
  explicit BrokerPendingServer(UniqueFd conn) : conn_(std::move(conn)) {}

  // implements PendingServer ---
  int fd() const override { return conn_.get(); }
  Result<UniqueFd> Finish(const sys::Deadline& deadline) override {
    if (!conn_.valid()) return MakeError(ErrorKind::kInternal, "Finish called twice");
    auto channel = ReadAnswer(conn_.get(), deadline);
    if (!channel && channel.error().kind == ErrorKind::kTimedOut) return channel;  // still pending
    conn_.reset();
    return channel;
  }

 private:
  UniqueFd conn_;
};

class BrokerTransport final : public Transport {
 public:
  BrokerTransport(std::string socket_path, int own_domain)
      : socket_path_(std::move(socket_path)), own_domain_(own_domain) {}

  // implements Transport ---
  int own_domain() const override { return own_domain_; }

  Result<std::unique_ptr<PendingServer>> Offer(int remote_domain, int port) override {
    auto conn = SendRequest(BrokerOp::kOffer, remote_domain, port);
    if (!conn) return tl::unexpected(conn.error());
    return std::unique_ptr<PendingServer>(std::make_unique<BrokerPendingServer>(std::move(*conn)));
  }

  bool hands_over_offers() const override { return true; }

  // The offer is the request's connection: whoever holds it receives the
  // channel when the peer joins.
  Result<UniqueFd> OfferToHandOver(int remote_domain, int port) override {
    return SendRequest(BrokerOp::kOffer, remote_domain, port);
  }

  Result<std::unique_ptr<PendingServer>> AdoptOffer(UniqueFd handed_over) override {
    if (!handed_over.valid()) return MakeError(ErrorKind::kMalformed, "no offer to adopt");
    return std::unique_ptr<PendingServer>(std::make_unique<BrokerPendingServer>(std::move(handed_over)));
  }

  Result<UniqueFd> Connect(int remote_domain, int port, const sys::Deadline& deadline) override {
    auto conn = SendRequest(BrokerOp::kConnect, remote_domain, port);
    if (!conn) return tl::unexpected(conn.error());
    return ReadAnswer(conn->get(), deadline);
  }

 private:
  Result<UniqueFd> SendRequest(BrokerOp op, int remote_domain, int port) {
    if (remote_domain == own_domain_)
      return MakeError(ErrorKind::kRefused, "a vchan to the own domain is refused");
    if (remote_domain < 0 || port < 0)
      return MakeError(ErrorKind::kMalformed, "negative domain or port");
    auto conn = sys::UnixConnect(socket_path_);
    if (!conn) return tl::unexpected(conn.error());
    auto request = EncodeBrokerRequest(
        {op, static_cast<uint32_t>(remote_domain), static_cast<uint32_t>(port)});
    if (auto st = sys::WriteAll(conn->get(), request); !st) return tl::unexpected(st.error());
    return conn;
  }

  std::string socket_path_;
  int own_domain_;
};

}  // namespace

std::unique_ptr<Transport> MakeBrokerTransport(std::string broker_socket, int own_domain) {
  return std::make_unique<BrokerTransport>(std::move(broker_socket), own_domain);
}

}  // namespace qrexec::vchan
