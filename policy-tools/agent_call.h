// One asynchronous conversation with a policy agent (qrexec-protocol.md
// §5.3-5.5): write the request, half-close, read the reply until EOF. Runs on
// the event::Loop, never blocks it.
//
// The agent is reached either
// * directly, over its socket (the GuiVM is dom0, or --direct-agent): the
//   request is "SERVICE dom0 name dom0\0" + JSON, as qrexec would frame it; or
// * through `qrexec-client -d GUIVM DEFAULT:QUBESRPC SERVICE dom0`, with the
//   JSON on its stdin and the reply on its stdout (a socketpair).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "base/result.h"
#include "base/unique_fd.h"
#include "event/loop.h"

namespace qrexec::policy_tools {

struct AgentRoute {
  // Socket of the local agent; empty = "/etc/qubes-rpc/<service>".
  std::string agent_socket;
  // Use the local socket for every GuiVM, not only for dom0 (embedded host).
  bool direct_for_all = false;
  std::string qrexec_client = "/usr/bin/qrexec-client";
};

// The largest agent reply accepted ("allow:" + a target is far shorter).
inline constexpr size_t kMaxAgentReply = 4096;

class AgentCall {
 public:
  // Called once, from the loop, with the reply text or the error. The
  // callback may destroy the AgentCall only through event::Loop::Post.
  using Done = std::function<void(Result<std::string> reply)>;

  // Starts the call; errors setting it up are returned (Done is not called).
  static Result<std::unique_ptr<AgentCall>> Start(event::Loop& loop, const AgentRoute& route,
                                                  std::string_view service, std::string_view guivm,
                                                  std::string_view json, Done done);
  AgentCall(const AgentCall&) = delete;
  AgentCall& operator=(const AgentCall&) = delete;

 private:
  AgentCall(UniqueFd fd, std::string request, Done done)
      : fd_(std::move(fd)), request_(std::move(request)), done_(std::move(done)) {}
  void OnReady();
  void Finish(Result<std::string> result);

  UniqueFd fd_;
  event::FdWatch watch_;  // after fd_: unregistered before it closes
  std::string request_;
  size_t written_ = 0;
  std::string reply_;
  Done done_;
};

}  // namespace qrexec::policy_tools
