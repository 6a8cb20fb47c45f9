#include "agent/agent.h"

#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cstdlib>
#include <cstring>

#include "base/log.h"

namespace qrexec::agent {

template <class... F>
struct Overloaded : F... {
  using F::operator()...;
};
template <class... F>
Overloaded(F...) -> Overloaded<F...>;

Agent::Agent(event::Loop& loop, vchan::Transport& transport, const AgentOptions& options)
    : loop_(loop),
      transport_(transport),
      options_(options),
      control_(loop, transport,
               {.on_connected = [this] { OnConnected(); },
                .on_message = [this](proto::DaemonControlMessage m) { OnMessage(std::move(m)); },
                .on_disconnected = [this] { triggers_.RefuseAllWaiting(); },
                .on_fatal = [this](const Error& e) { OnFatal(e); }}),
      triggers_(
          loop, trigger_budget_, options.trigger_timeout,
          {.forward =
               [this](std::span<const std::byte> frame) {
                 if (!control_.connected()) return false;
                 control_.Send(frame);
                 return true;
               },
           .on_terminated = [this](const proto::ConnectionTerminated& m) { SendTerminated(m); }}),
      launcher_(
          loop, call_budget_,
          {.use_fork_server = options.use_fork_server,
           .fork_server_socket_format = options.fork_server_socket_format,
           .use_warm_handlers = options.use_warm_handlers,
           .pam_session = PamSessionFromOptions(options)},
          {.on_terminated = [this](const proto::ConnectionTerminated& m) { SendTerminated(m); }}) {
  trigger_budget_.SetOnRelease([this] { triggers_.ResumeAccepting(); });
}

Agent::~Agent() { trigger_budget_.SetOnRelease(nullptr); }

Status Agent::Start() {
  auto term = loop_.WatchSignal(SIGTERM, [this](int) { Stop(0); });
  if (!term) return tl::unexpected(term.error());
  sigterm_ = std::move(*term);
  auto interrupt = loop_.WatchSignal(SIGINT, [this](int) { Stop(0); });
  if (!interrupt) return tl::unexpected(interrupt.error());
  sigint_ = std::move(*interrupt);
  if (auto listening = triggers_.Listen(options_.agent_socket); !listening) return listening;
  return control_.Start();
}

void Agent::OnConnected() {
  LOG_INFO("dom0 connected");
  if (!notified_ready_) {
    NotifyReady();
    notified_ready_ = true;
  }
}

void Agent::OnMessage(proto::DaemonControlMessage message) {
  std::visit(Overloaded{
                 [this](const proto::ExecRequest& m) { launcher_.Launch(m); },
                 [this](const proto::ServiceConnect& m) { OnServiceConnect(m); },
                 [this](const proto::ServiceRefused& m) { triggers_.Refuse(m.ident); },
             },
             message);
}

void Agent::OnServiceConnect(const proto::ServiceConnect& message) {
  proto::ExecParams params{message.connect_domain, message.connect_port};
  // Where only the domain's root may ask for channels (the broker), the
  // agent offers the caller's data channel and hands the offer over with
  // the answer, so no other local user can offer it first.
  UniqueFd offer;
  if (transport_.hands_over_offers()) {
    auto offered = transport_.OfferToHandOver(static_cast<int>(message.connect_domain),
                                              static_cast<int>(message.connect_port));
    if (!offered) {
      LOG_WARNING("cannot offer the data vchan of an outgoing call: {}", offered.error().ToString());
      triggers_.Refuse(message.ident);
      SendTerminated({message.connect_domain, message.connect_port});
      return;
    }
    offer = std::move(*offered);
  }
  if (triggers_.Connect(message.ident, params, std::move(offer))) return;
  LOG_WARNING("MSG_SERVICE_CONNECT for an unknown request; releasing its port");
  SendTerminated({message.connect_domain, message.connect_port});
}

void Agent::SendTerminated(const proto::ConnectionTerminated& message) {
  control_.Send(proto::EncodeConnectionTerminated(message));
}

void Agent::OnFatal(const Error& error) {
  LOG_ERROR("invalid message from dom0: {}", error.ToString());
  Stop(1);
}

void Agent::Stop(int status) {
  if (!exit_status_) exit_status_ = status;
  loop_.Quit();
}

void NotifyReady() {
  const char* path = std::getenv("NOTIFY_SOCKET");
  if (path == nullptr || path[0] == '\0') return;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  size_t len = std::strlen(path);
  if (len >= sizeof addr.sun_path) {
    LOG_WARNING("NOTIFY_SOCKET path too long");
    return;
  }
  std::memcpy(addr.sun_path, path, len);
  if (addr.sun_path[0] == '@') addr.sun_path[0] = '\0';  // abstract namespace
  UniqueFd sock(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!sock.valid()) return;
  static constexpr char kReady[] = "READY=1";
  auto addr_len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + len);
  if (::sendto(sock.get(), kReady, sizeof kReady - 1, MSG_NOSIGNAL,
               reinterpret_cast<const sockaddr*>(&addr), addr_len) < 0)
    LOG_WARNING("cannot notify systemd: {}", std::strerror(errno));
}

}  // namespace qrexec::agent
