// The socket backend (Qubes' vchan-socket files), see transport.h.
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <cerrno>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>
#include <thread>

#include "vchan/transport.h"

namespace qrexec::vchan {
namespace {

// The client polls for the server's socket file. A call's two ends usually
// arrive within a millisecond of each other (the caller learns the port
// only after the target's agent got its request), so the client first polls
// every 50 us for 2 ms -- a failed connect() costs a few microseconds, and
// the wait it saves is on every call's critical path -- and then backs off
// to 5 ms between tries so that a peer that is late costs no CPU.
constexpr auto kFastConnectRetry = std::chrono::microseconds(50);
constexpr int kFastConnectTries = 40;
constexpr auto kMaxConnectRetry = std::chrono::milliseconds(5);

std::string SocketPath(const std::string& dir, int server, int client, int port) {
  return dir + "/vchan." + std::to_string(server) + "." + std::to_string(client) + "." +
         std::to_string(port) + ".sock";
}

tl::unexpected<Error> Loopback() {
  return MakeError(ErrorKind::kRefused, "a vchan to the own domain is refused");
}

// Is some socket listening on `path`? (/proc/net/unix: Flags has
// __SO_ACCEPTCON = 0x10000 for listening sockets; the path is the last
// column.) Used to tell a live offer from a stale file without connecting,
// which would steal the one accept of the live server.
bool SomeoneListensOn(const std::string& path) {
  std::ifstream table("/proc/net/unix");
  std::string line;
  std::getline(table, line);  // column names
  while (std::getline(table, line)) {
    if (line.size() < path.size() + 1 ||
        line.compare(line.size() - path.size(), path.size(), path) != 0 ||
        line[line.size() - path.size() - 1] != ' ')
      continue;
    // Num RefCount Protocol Flags ...
    unsigned long flags = 0;
    char num[32];
    unsigned refcount = 0, protocol = 0;
    if (std::sscanf(line.c_str(), "%31s %x %x %lx", num, &refcount, &protocol, &flags) == 4 &&
        (flags & 0x10000) != 0)
      return true;
  }
  return false;
}

class SocketPendingServer final : public PendingServer {
 public:
  SocketPendingServer(UniqueFd listener, std::string path, ino_t inode)
      : listener_(std::move(listener)), path_(std::move(path)), inode_(inode) {}
  ~SocketPendingServer() override { Unlink(); }

  // implements PendingServer ---
  int fd() const override { return listener_.get(); }
  Result<UniqueFd> Finish(const sys::Deadline& deadline) override {
    if (!listener_.valid()) return MakeError(ErrorKind::kInternal, "Finish called twice");
    for (;;) {
      if (auto w = sys::WaitReadable(listener_.get(), deadline); !w) {
        if (w.error().kind == ErrorKind::kTimedOut)
          return MakeError(ErrorKind::kTimedOut, "no peer joined vchan " + path_);
        return tl::unexpected(w.error());
      }
      auto conn = sys::Accept(listener_.get());
      if (!conn && conn.error().sys_errno == EAGAIN) continue;
      if (!conn) return tl::unexpected(conn.error());
      Unlink();
      listener_.reset();
      return std::move(*conn);
    }
  }

 private:
  // Removes the socket file, unless someone else already replaced it.
  void Unlink() {
    if (unlinked_) return;
    unlinked_ = true;
    struct stat st {};
    if (::lstat(path_.c_str(), &st) == 0 && st.st_ino == inode_) ::unlink(path_.c_str());
  }

  UniqueFd listener_;
  std::string path_;
  ino_t inode_;
  bool unlinked_ = false;
};

class SocketTransport final : public Transport {
 public:
  SocketTransport(std::string dir, int own_domain)
      : dir_(std::move(dir)), own_domain_(own_domain) {}

  // implements Transport ---
  int own_domain() const override { return own_domain_; }

  Result<std::unique_ptr<PendingServer>> Offer(int remote_domain, int port) override {
    if (remote_domain == own_domain_) return Loopback();
    std::string path = SocketPath(dir_, own_domain_, remote_domain, port);
    struct stat st {};
    if (::lstat(path.c_str(), &st) == 0 && SomeoneListensOn(path))
      return MakeError(ErrorKind::kOverloaded, "vchan already offered: " + path, EADDRINUSE);
    // sys::UnixListen replaces a stale file.
    auto listener = sys::UnixListen(path, 1, /*nonblocking=*/true);
    if (!listener) return tl::unexpected(listener.error());
    if (::lstat(path.c_str(), &st) != 0) return ErrnoError("stat " + path);
    return std::unique_ptr<PendingServer>(
        std::make_unique<SocketPendingServer>(std::move(*listener), std::move(path), st.st_ino));
  }

  Result<UniqueFd> Connect(int remote_domain, int port, const sys::Deadline& deadline) override {
    if (remote_domain == own_domain_) return Loopback();
    std::string path = SocketPath(dir_, remote_domain, own_domain_, port);
    std::chrono::microseconds retry = kFastConnectRetry;
    for (int tries = 1;; ++tries) {
      auto fd = sys::UnixConnect(path);
      if (fd) return fd;
      int err = fd.error().sys_errno;
      if (err != ENOENT && err != ECONNREFUSED) return tl::unexpected(fd.error());
      if (deadline.expired()) return MakeError(ErrorKind::kTimedOut, "no vchan offered at " + path);
      std::this_thread::sleep_for(retry);
      if (tries >= kFastConnectTries)
        retry = std::min<std::chrono::microseconds>(retry * 2, kMaxConnectRetry);
    }
  }

 private:
  std::string dir_;
  int own_domain_;
};

}  // namespace

std::unique_ptr<Transport> MakeSocketTransport(std::string dir, int own_domain) {
  return std::make_unique<SocketTransport>(std::move(dir), own_domain);
}

}  // namespace qrexec::vchan
