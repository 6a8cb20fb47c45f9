#include "daemon/agent_channel.h"

#include "base/limits.h"
#include "base/log.h"
#include "proto/handshake.h"

namespace qrexec::daemon {
namespace {

Result<uint32_t> DaemonHandshake(int fd, const sys::Deadline& deadline) {
  auto agent_version = proto::ReceiveHello(fd, deadline);
  if (!agent_version) return tl::unexpected(agent_version.error());
  auto negotiated = proto::NegotiateControlAsDaemon(*agent_version);
  if (!negotiated) {
    LOG_ERROR("incompatible agent protocol version {} (need at least {})", *agent_version,
              proto::kMinProtocolVersion);
    return tl::unexpected(negotiated.error());
  }
  if (auto st = proto::SendHello(fd, negotiated->reply_version, deadline); !st)
    return tl::unexpected(st.error());
  LOG_DEBUG("agent protocol {}, negotiated {}", *agent_version, negotiated->negotiated);
  return negotiated->negotiated;
}

}  // namespace

Result<std::unique_ptr<AgentChannel>> AgentChannel::Connect(event::Loop& loop,
                                                            vchan::Transport& transport, int domid,
                                                            const sys::Deadline& connect_deadline,
                                                            const sys::Deadline& handshake_deadline,
                                                            Handlers handlers) {
  auto fd = transport.Connect(domid, static_cast<int>(limits::kControlPort), connect_deadline);
  if (!fd) return tl::unexpected(fd.error());
  auto version = DaemonHandshake(fd->get(), handshake_deadline);
  if (!version) return tl::unexpected(version.error());
  std::unique_ptr<AgentChannel> self(new AgentChannel(*version, std::move(handlers)));
  AgentChannel* raw = self.get();
  auto conn = MessageConn::Create(loop, std::move(*fd), proto::kMaxControlFromAgentBody,
                                  {[raw](proto::Message m) { raw->OnMessage(std::move(m)); },
                                   [raw](Status st) { raw->OnClose(std::move(st)); }});
  if (!conn) return tl::unexpected(conn.error());
  raw->conn_ = std::move(*conn);
  return self;
}

void AgentChannel::OnMessage(proto::Message message) {
  auto decoded = proto::DecodeControlFromAgent(message.header, message.body, version_);
  if (!decoded) {
    const proto::DecodeFailure& failure = decoded.error();
    if (failure.kind == proto::FailureKind::kRefuse) {
      LOG_WARNING("refusing a request from the agent: {}", failure.reason);
      conn_->Send(proto::EncodeServiceRefusedRaw(failure.raw_ident));
      return;
    }
    OnClose(MakeError(ErrorKind::kMalformed,
                      "invalid message from the agent (type 0x" +
                          fmt::format("{:x}", message.header.untrusted_type) + ", len " +
                          std::to_string(message.header.untrusted_len) + "): " + failure.reason));
    return;
  }
  if (auto* trigger = std::get_if<proto::Trigger>(&*decoded))
    handlers_.on_trigger(std::move(*trigger));
  else
    handlers_.on_terminated(std::get<proto::ConnectionTerminated>(*decoded));
}

void AgentChannel::OnClose(Status status) {
  if (!status && status.error().kind != ErrorKind::kMalformed) status = Status();
  auto on_closed = std::move(handlers_.on_closed);
  if (on_closed) on_closed(std::move(status));
}

}  // namespace qrexec::daemon
