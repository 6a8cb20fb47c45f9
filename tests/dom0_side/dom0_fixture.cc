#include "dom0_fixture.h"

#include <gtest/gtest.h>
#include <sys/socket.h>

#include <iomanip>
#include <ostream>

#include "base/sys.h"

namespace qrexec::dom0test {

FakeServer::FakeServer(std::string path, std::vector<std::string> answers, ReadUntil until,
                       std::function<void(size_t)> before_answer)
    : path_(std::move(path)),
      answers_(std::move(answers)),
      until_(until),
      before_answer_(std::move(before_answer)),
      listen_fd_(ListenUnix(path_)) {
  thread_ = std::thread([this] { Serve(); });
}

FakeServer::~FakeServer() {
  ::shutdown(listen_fd_.get(), SHUT_RDWR);
  thread_.join();
}

void FakeServer::Serve() {
  for (size_t i = 0; i < answers_.size(); ++i) {
    UniqueFd fd = AcceptOne(listen_fd_.get(), milliseconds(15000));
    if (!fd.valid()) return;
    std::string request;
    char c;
    while (::read(fd.get(), &c, 1) == 1) {
      request.push_back(c);
      if (until_ == ReadUntil::kBlankLine && request.ends_with("\n\n")) break;
    }
    {
      std::lock_guard lock(mutex_);
      requests_.push_back(request);
    }
    if (before_answer_) before_answer_(i);
    (void)SendRaw(fd.get(), answers_[i]);
  }
}

std::vector<std::string> FakeServer::Requests(size_t count, milliseconds timeout) {
  auto end = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    {
      std::lock_guard lock(mutex_);
      if (requests_.size() >= count || std::chrono::steady_clock::now() > end) return requests_;
    }
    std::this_thread::sleep_for(milliseconds(5));
  }
}

UniqueFd ListenUnix(const std::string& path) {
  auto fd = sys::UnixListen(path);
  EXPECT_TRUE(fd) << path;
  return fd ? std::move(*fd) : UniqueFd();
}

UniqueFd AcceptOne(int listen_fd, milliseconds timeout) {
  if (!sys::WaitReadable(listen_fd, sys::Deadline::After(timeout))) return UniqueFd();
  auto fd = sys::Accept(listen_fd);
  return fd ? std::move(*fd) : UniqueFd();
}

bool ServeDaemonHello(int fd) {
  if (!SendMessage(fd, kHello, HelloBody(3))) return false;
  Msg hello = Recv(fd);
  EXPECT_EQ(hello, (Msg{kHello, HelloBody(3)}));
  return hello == Msg{kHello, HelloBody(3)};
}

std::string CmdBody(uint32_t domain, uint32_t port, std::string_view command) {
  return U32(domain) + U32(port) + std::string(command) + std::string(1, '\0');
}

std::string Ident(std::string_view ident) { return Fixed(ident, 32); }

std::ostream& operator<<(std::ostream& out, const Msg& msg) {
  out << "{0x" << std::hex << msg.type << std::dec << ", \"";
  for (unsigned char c : msg.body) {
    if (c >= 0x20 && c < 0x7f)
      out << c;
    else
      out << "\\x" << std::hex << std::setw(2) << std::setfill('0') << int(c) << std::dec;
  }
  return out << "\"}";
}

Msg Recv(int fd, milliseconds timeout) {
  auto message = RecvMessage(fd, timeout);
  if (!message) return Msg{0xffffffff, message.error().ToString()};
  return Msg{message->type, message->body};
}

std::string StreamUntilEof(int fd, uint32_t type) {
  std::string data;
  for (;;) {
    Msg msg = Recv(fd);
    EXPECT_EQ(msg.type, type) << msg;
    if (msg.type != type || msg.body.empty()) return data;
    data += msg.body;
  }
}

bool SilentFor(int fd, milliseconds quiet) {
  return !sys::WaitReadable(fd, sys::Deadline::After(quiet));
}

}  // namespace qrexec::dom0test
