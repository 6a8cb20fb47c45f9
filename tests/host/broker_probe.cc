// broker_probe OP REMOTE PORT TIMEOUT_MS: runs inside a sandbox (copied into
// the domain's home by the test), asks the domain's broker socket for one
// channel and prints what happened:
//   "status=N" when the broker refused (N = errno value) or "timeout",
//   "connected", then it sends "hello from <hostname>" and prints what the
//   peer sent.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "host/broker.h"

int main(int argc, char** argv) {
  if (argc != 5) return 2;
  qrexec::host::BrokerRequest request;
  request.op = std::strcmp(argv[1], "offer") == 0 ? qrexec::host::BrokerOp::kOffer : qrexec::host::BrokerOp::kConnect;
  request.remote_domain = static_cast<uint32_t>(std::atoi(argv[2]));
  request.port = static_cast<uint32_t>(std::atoi(argv[3]));
  auto deadline = qrexec::sys::Deadline::After(std::chrono::milliseconds(std::atoi(argv[4])));
  auto fd = qrexec::host::BrokerRequestChannel("/run/qubes/broker.sock", request, deadline);
  if (!fd) {
    if (fd.error().kind == qrexec::ErrorKind::kTimedOut) {
      std::printf("timeout\n");
    } else {
      std::printf("status=%d\n", fd.error().sys_errno);
    }
    return 1;
  }
  std::printf("connected\n");
  std::fflush(stdout);
  char host[64] = {};
  ::gethostname(host, sizeof host - 1);
  std::string hello = std::string("hello from ") + host + "\n";
  if (::write(fd->get(), hello.data(), hello.size()) < 0) return 1;
  char buf[256];
  ssize_t n = ::read(fd->get(), buf, sizeof buf - 1);
  if (n > 0) {
    buf[n] = '\0';
    std::printf("%s", buf);
  }
  return 0;
}
