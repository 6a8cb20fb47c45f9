#include "daemon/daemon.h"

#include <csignal>

#include "base/escape_filter.h"
#include "base/limits.h"
#include "base/log.h"
#include "base/names.h"
#include "exec/command.h"

namespace qrexec::daemon {
namespace {

constexpr auto kReconnectSlice = std::chrono::milliseconds(500);
constexpr auto kReconnectPause = std::chrono::milliseconds(50);
constexpr auto kHandshakeTimeout = std::chrono::seconds(10);

}  // namespace

Daemon::Daemon(event::Loop& loop, vchan::Transport& transport, DaemonConfig config,
               std::string client_program)
    : loop_(loop),
      transport_(transport),
      config_(std::move(config)),
      ports_(config_.domid),
      dom0_(loop, std::move(client_program), config_.socket_dir) {}

Daemon::~Daemon() = default;

Status Daemon::Start(const sys::Deadline& deadline) {
  // SIGTERM keeps its default action while we block for the agent; after
  // that it goes through the loop so that the sockets are removed.
  if (auto st = ConnectAgent(deadline, deadline); !st) return st;
  auto timer = loop_.AddTimer([this] { TryReconnect(); });
  if (!timer) return tl::unexpected(timer.error());
  restart_timer_ = std::move(*timer);
  return Ok();
}

// Called once the agent is there and before the client socket appears: a
// SIGTERM sent by whoever saw the socket must go through the loop.
Status Daemon::WatchSigterm() {
  if (sigterm_.active()) return Ok();
  auto sigterm = loop_.WatchSignal(SIGTERM, [this](int) {
    LOG_INFO("SIGTERM: exiting");
    loop_.Quit();
  });
  if (!sigterm) return tl::unexpected(sigterm.error());
  sigterm_ = std::move(*sigterm);
  return Ok();
}

Status Daemon::ConnectAgent(const sys::Deadline& connect_deadline,
                            const sys::Deadline& handshake_deadline) {
  auto agent =
      AgentChannel::Connect(loop_, transport_, config_.domid, connect_deadline, handshake_deadline,
                            {[this](proto::Trigger t) { OnTrigger(std::move(t)); },
                             [this](proto::ConnectionTerminated m) { OnTerminated(m); },
                             [this](Status st) { OnAgentClosed(std::move(st)); }});
  if (!agent) return tl::unexpected(agent.error());
  agent_ = std::move(*agent);
  if (auto st = WatchSigterm(); !st) return st;
  auto server = ClientServer::Create(
      loop_, {config_.socket_dir, config_.domid, config_.name, config_.uuid},
      {[this](ClientId c, proto::ClientRequest r) { OnClientRequest(c, std::move(r)); },
       [this](ClientId c) { OnClientGone(c); }});
  if (!server) return tl::unexpected(server.error());
  server_ = std::move(*server);
  return Ok();
}

// --- agent side ---

void Daemon::OnTrigger(proto::Trigger trigger) {
  if (pending_.size() >= static_cast<size_t>(limits::kMaxPendingPolicy)) {
    LOG_WARNING("too many pending requests, refusing {}", trigger.request_id);
    if (auto refused = proto::EncodeServiceRefused(trigger.request_id)) agent_->Send(*refused);
    return;
  }
  uint64_t id = next_call_id_++;
  PendingCall& call = pending_[id];
  call.started = Clock::now();
  call.trigger = std::move(trigger);
  LogStage(call, "trigger_received");
  PolicyRequest request{config_.name, std::nullopt, call.trigger.target, call.trigger.service};
  if (call.trigger.type == proto::MsgType::kTriggerService4)
    request.requested_source = call.trigger.requested_source;
  auto query = PolicyQuery::Start(
      loop_, {config_.policy_socket, config_.policy_program}, std::move(request),
      [this, id](Result<PolicyAnswer> answer) { OnPolicyAnswer(id, std::move(answer)); });
  if (!query) return Refuse(id, "cannot ask policy: " + query.error().ToString());
  call.policy = std::move(*query);
}

void Daemon::OnTerminated(const proto::ConnectionTerminated& message) {
  trimmer_.Touch();  // a call ended (ours or one we serve)
  if (!ports_.Release(message.connect_port, static_cast<int>(message.connect_domain))) {
    // A port of the target's daemon: our caller's side of a call to another
    // VM ended. A disposable serving it is killed now.
    proto::ExecParams connection{message.connect_domain, message.connect_port};
    if (auto it = joined_clients_.find({connection.connect_domain, connection.connect_port});
        it != joined_clients_.end()) {
      ClientId client = it->second;
      joined_clients_.erase(it);
      server_->Drop(client);  // qrexec-client -W: the call is over
    }
    for (auto& [call_id, connector] : lingering_)
      if (connector->SourceTerminated(connection)) return;  // may have erased itself
    return;
  }
  LOG_DEBUG("port {} released", message.connect_port);
  auto it = port_clients_.find(message.connect_port);
  if (it == port_clients_.end()) return;
  ClientId client = it->second;
  port_clients_.erase(it);
  server_->Drop(client);
}

void Daemon::OnAgentClosed(Status status) {
  if (!status) {
    LOG_ERROR("{}; exiting", status.error().message);
    exit_code_ = 1;
    loop_.Quit();
    return;
  }
  LOG_INFO("the agent disconnected; waiting for it to come back");
  (void)restart_timer_.Arm(std::chrono::nanoseconds(0));
}

void Daemon::DropAgent() {
  server_.reset();  // closes every client, removes the socket and symlinks
  agent_.reset();
  pending_.clear();
  port_clients_.clear();
  joined_clients_.clear();
  ports_.Clear();
}

// Waits for the agent in short slices, so that the loop (SIGTERM, running
// dom0 services, disposables) keeps going in between.
void Daemon::TryReconnect() {
  if (agent_) DropAgent();
  auto st =
      ConnectAgent(sys::Deadline::After(kReconnectSlice), sys::Deadline::After(kHandshakeTimeout));
  if (!st && st.error().kind == ErrorKind::kTimedOut && !agent_) {
    (void)restart_timer_.Arm(kReconnectPause);
    return;
  }
  if (!st) {
    LOG_ERROR("cannot reconnect to the agent: {}", st.error().ToString());
    exit_code_ = 1;
    loop_.Quit();
    return;
  }
  LOG_INFO("the agent is back (protocol {})", agent_->version());
}

// --- local clients (§2.9) ---

void Daemon::OnClientRequest(ClientId client, proto::ClientRequest request) {
  if (auto* exec = std::get_if<proto::ExecRequest>(&request))
    OnExecRequest(client, std::move(*exec));
  else
    OnClientServiceConnect(client, std::get<proto::ServiceConnect>(std::move(request)));
}

std::optional<uint32_t> Daemon::AllocateFor(ClientId client, uint32_t connect_domain) {
  auto port = ports_.Allocate(static_cast<int>(connect_domain));
  if (!port) {
    LOG_ERROR("no free data port for domain {}", connect_domain);
    server_->Drop(client);
    return std::nullopt;
  }
  port_clients_[*port] = client;
  return port;
}

void Daemon::OnExecRequest(ClientId client, proto::ExecRequest request) {
  proto::MsgType type = static_cast<proto::MsgType>(request.type);
  if (request.connect_port == 0) {
    auto port = AllocateFor(client, request.connect_domain);
    if (!port) return;
    request.connect_port = *port;
    server_->Reply(client,
                   proto::EncodeClientReply(type, {static_cast<uint32_t>(config_.domid), *port}));
  } else {
    LOG_ERROR("client {} asked for a specific port {}", client, request.connect_port);
  }
  request.command = exec::SubstituteDefaultUser(request.command, config_.default_user);
  auto frame = proto::EncodeExecRequest(request);
  if (!frame) {
    LOG_ERROR("client {}: cannot forward its command: {}", client, frame.error().ToString());
    server_->Drop(client);
    return;
  }
  agent_->Send(*frame);
}

void Daemon::OnClientServiceConnect(ClientId client, proto::ServiceConnect request) {
  auto it = FindPending(request.ident);
  if (it == pending_.end()) {
    LOG_WARNING("client {}: no pending request {}", client, SanitizeForLog(request.ident));
    server_->Drop(client);
    return;
  }
  pending_.erase(it);  // answered by this client: cancels our own policy/connect work
  if (request.connect_port == 0) {
    auto port = AllocateFor(client, request.connect_domain);
    if (!port) return;
    request.connect_port = *port;
    server_->Reply(client, proto::EncodeClientReply(proto::MsgType::kServiceConnect,
                                                    {static_cast<uint32_t>(config_.domid), *port}));
  } else {
    // The target's daemon allocated the port (qrexec-client -c for a VM
    // call). The client may stay to learn that our caller went away.
    joined_clients_[{request.connect_domain, request.connect_port}] = client;
  }
  SendServiceConnect(request.ident, request.connect_domain, request.connect_port,
                     request.ident_field_len);
}

void Daemon::OnClientGone(ClientId client) {
  for (auto it = port_clients_.begin(); it != port_clients_.end();)
    it = it->second == client ? port_clients_.erase(it) : std::next(it);
  for (auto it = joined_clients_.begin(); it != joined_clients_.end();)
    it = it->second == client ? joined_clients_.erase(it) : std::next(it);
}

// --- calls ---

void Daemon::OnPolicyAnswer(uint64_t call_id, Result<PolicyAnswer> answer) {
  auto it = pending_.find(call_id);
  if (it == pending_.end()) return;
  it->second.policy.reset();
  LogStage(it->second, "policy_answered");
  if (!answer) return Refuse(call_id, "policy: " + answer.error().ToString());
  if (!answer->allow) return Refuse(call_id, "denied by policy");
  const proto::Trigger& trigger = it->second.trigger;
  std::string service = answer->service.value_or(trigger.service);
  if (service.find('+') == std::string::npos) service += '+';
  std::string source = answer->policy_source.value_or(config_.name);
  if (names::RefersToDom0(answer->target))
    return RunInDom0(call_id, *answer, std::move(service), std::move(source));
  ConnectToVm(call_id, *answer, std::move(service), std::move(source));
}

void Daemon::ConnectToVm(uint64_t call_id, const PolicyAnswer& answer, std::string service,
                         std::string source) {
  TargetRequest request{answer.target_uuid.value_or(answer.target), answer.autostart,
                        exec::FormatRpcCommand(answer.user, service, source), config_.domid};
  auto connector = TargetConnector::Start(
      loop_, {config_.socket_dir, config_.qubesd_socket}, std::move(request),
      {[this, call_id](Result<proto::ExecParams> p) { OnTargetConnected(call_id, std::move(p)); },
       [this, call_id] {
         lingering_.erase(call_id);  // a disposable's call ended
       }});
  if (!connector) return Refuse(call_id, connector.error().ToString());
  pending_[call_id].connector = std::move(*connector);
}

void Daemon::RunInDom0(uint64_t call_id, const PolicyAnswer& answer, std::string service,
                       std::string source) {
  PendingCall& call = pending_[call_id];
  if (dom0_.full()) return Refuse(call_id, "too many dom0 services running for this domain");
  auto port = ports_.Allocate(0);
  if (!port) return Refuse(call_id, "no free data port");
  Dom0Call dom0{call.trigger.request_id, std::move(source),      config_.domid, *port,
                std::move(service),      answer.requested_target};
  if (auto st = dom0_.Run(dom0); !st) {
    ports_.Release(*port, 0);
    return Refuse(call_id, "cannot run the dom0 service: " + st.error().ToString());
  }
  LogStage(call, "target_connected");
  SendServiceConnect(call.trigger.request_id, 0, *port);
  LogStage(call, "service_connect_sent");
  pending_.erase(call_id);
}

void Daemon::OnTargetConnected(uint64_t call_id, Result<proto::ExecParams> params) {
  auto it = pending_.find(call_id);
  if (it == pending_.end()) return;
  PendingCall& call = it->second;
  if (!params) {
    // Keep the connector: it may still have to kill a disposable it created.
    lingering_[call_id] = std::move(call.connector);
    return Refuse(call_id, params.error().message);
  }
  LogStage(call, "target_connected");
  SendServiceConnect(call.trigger.request_id, params->connect_domain, params->connect_port);
  LogStage(call, "service_connect_sent");
  // The connector may still be needed (a disposable lives until its call
  // ends); it reports on_finished when it is done, now or later.
  lingering_[call_id] = std::move(call.connector);
  pending_.erase(it);
}

void Daemon::SendServiceConnect(const std::string& ident, uint32_t domain, uint32_t port,
                                size_t ident_field_len) {
  auto frame = proto::EncodeServiceConnect({domain, port, ident, ident_field_len});
  if (!frame) {
    LOG_ERROR("cannot encode SERVICE_CONNECT: {}", frame.error().ToString());
    return;
  }
  agent_->Send(*frame);
}

void Daemon::Refuse(uint64_t call_id, const std::string& why) {
  auto it = pending_.find(call_id);
  if (it == pending_.end()) return;
  LOG_INFO("refusing {} ({} -> {}): {}", it->second.trigger.request_id,
           SanitizeForLog(it->second.trigger.service), SanitizeForLog(it->second.trigger.target),
           why);
  LogStage(it->second, "refused");
  if (auto frame = proto::EncodeServiceRefused(it->second.trigger.request_id)) agent_->Send(*frame);
  pending_.erase(it);
  trimmer_.Touch();
}

void Daemon::LogStage(const PendingCall& call, const char* stage) const {
  auto us = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - call.started);
  LOG_DEBUG("call-timing ident={} stage={} us={} mono_us={}", call.trigger.request_id, stage, us.count(),
            log::MonotonicMicros());
}

std::map<uint64_t, Daemon::PendingCall>::iterator Daemon::FindPending(const std::string& ident) {
  for (auto it = pending_.begin(); it != pending_.end(); ++it)
    if (it->second.trigger.request_id == ident) return it;
  return pending_.end();
}

}  // namespace qrexec::daemon
