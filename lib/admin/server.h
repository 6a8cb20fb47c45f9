// qubesd-compatible socket server: accepts connections on one or more Unix
// sockets, reads one request per connection until the client half-closes
// (bounded size and time), dispatches it to the handler registered for its
// method and writes the reply, then closes. Runs on an event::Loop; a slow or bad
// client affects only its own connection.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "admin/protocol.h"
#include "base/result.h"
#include "base/unique_fd.h"
#include "event/loop.h"

namespace qrexec::admin {

class Server {
 public:
  // Sends the reply; call exactly once, now or later (a handler may defer the
  // answer, e.g. until a domain has started). Calling it after the client or
  // the server went away is harmless.
  using Respond = std::function<void(Reply)>;
  using Handler = std::function<void(const Request&, Respond)>;

  struct Options {
    size_t max_connections = 256;
    std::chrono::milliseconds read_timeout{10000};
    std::chrono::milliseconds write_timeout{10000};
  };

  explicit Server(event::Loop& loop);
  Server(event::Loop& loop, Options options);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Registers `handler` for `method` (without argument). Unknown methods get
  // a PermissionDenied exception, as qubesd answers.
  void Handle(std::string method, Handler handler);
  // Listens on a new socket at `path` (replacing a stale socket file).
  Status Listen(const std::string& path);
  // Takes an already listening socket.
  void AddListener(UniqueFd listen_fd);

  size_t connection_count() const { return connections_.size(); }

 private:
  struct Connection {
    UniqueFd fd;
    std::string input;
    std::string output;
    size_t written = 0;
    bool dispatched = false;
    event::FdWatch watch;  // declared after fd: unregistered before it closes
    event::Timer timer;
  };

  void OnAcceptable(int listen_fd);
  void OnConnectionEvent(uint64_t id, event::Ready ready);
  void Dispatch(uint64_t id);
  void SendReply(uint64_t id, const Reply& reply);
  void Close(uint64_t id);

  event::Loop& loop_;
  Options options_;
  std::vector<std::pair<UniqueFd, event::FdWatch>> listeners_;
  std::map<std::string, Handler> handlers_;
  std::map<uint64_t, Connection> connections_;
  uint64_t next_connection_ = 1;
  std::shared_ptr<int> alive_ = std::make_shared<int>(0);
};

}  // namespace qrexec::admin
