// bounds_probe: the attacker's side of tests/host/bounds_test.cc. Copied into
// a domain's home and run there (as root, through `qrexec-client -d`); it
// writes what it saw to files the test reads from the domain's home.
//
//   bounds_probe broker-flood COUNT HOLD_MS OUT REMOTE...
//     Sends COUNT broker offers (distinct channels: each REMOTE domain id on
//     every data port), never answered by anyone, and keeps them open. After
//     500 ms it writes OUT.holding, then waits until every request is answered
//     or HOLD_MS passed and writes OUT. Both hold
//     "sent=N ok=N eagain=N etimedout=N other=N unanswered=N".
//   bounds_probe dom0-flood COUNT SERVICE OUT
//     Makes COUNT concurrent calls of SERVICE in @adminvm the way a hostile
//     caller may: each asks the agent, closes its agent connection as soon
//     as it has the answer (so the agent reports the port free) and keeps
//     the data channel open until the service ends. Writes OUT.verdicts
//     ("connected=N refused=N failed=N") once every call has its answer, and
//     OUT when all calls ended.
//   bounds_probe idle-triggers COUNT HOLD_MS OUT
//     Opens COUNT connections to the agent's trigger socket and sends
//     nothing. Writes OUT.open ("open=N refused=N"), then OUT
//     ("open=N dropped=N") once the agent closed them all or HOLD_MS passed.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "agent/client_vm.h"
#include "base/limits.h"
#include "base/sys.h"
#include "host/broker.h"
#include "stream/stream.h"
#include "vchan/transport.h"

namespace {

using namespace qrexec;
using namespace std::chrono_literals;

constexpr const char* kBrokerSocket = "/run/qubes/broker.sock";
constexpr const char* kAgentSocket = "/run/qubes/qrexec-agent";

void WriteResult(const std::string& path, const std::string& text) {
  std::string tmp = path + ".tmp";
  std::ofstream(tmp) << text << "\n";
  std::rename(tmp.c_str(), path.c_str());
}

// --- broker-flood ---

struct FloodRequest {
  UniqueFd fd;
  bool answered = false;
};

struct FloodCounts {
  int sent = 0, ok = 0, eagain = 0, etimedout = 0, other = 0;
  std::string Format(int unanswered) const {
    return "sent=" + std::to_string(sent) + " ok=" + std::to_string(ok) + " eagain=" + std::to_string(eagain) +
           " etimedout=" + std::to_string(etimedout) + " other=" + std::to_string(other) +
           " unanswered=" + std::to_string(unanswered);
  }
};

// Reads the answer of one request that poll() found readable.
void ReadAnswer(FloodRequest& request, FloodCounts& counts) {
  std::array<std::byte, host::kBrokerStatusSize> status{};
  auto got = sys::RecvWithFd(request.fd.get(), status);
  request.answered = true;
  if (!got || got->first < status.size()) {
    ++counts.other;
  } else {
    uint32_t code = vchan::DecodeBrokerStatus(status);
    if (code == 0) ++counts.ok;
    else if (code == EAGAIN) ++counts.eagain;
    else if (code == ETIMEDOUT) ++counts.etimedout;
    else ++counts.other;
  }
  request.fd.reset();
}

// Polls the open requests until `until`; returns how many are unanswered.
int CollectAnswers(std::vector<FloodRequest>& requests, FloodCounts& counts, sys::Clock::time_point until) {
  for (;;) {
    std::vector<pollfd> fds;
    std::vector<FloodRequest*> owners;
    for (auto& request : requests) {
      if (request.answered) continue;
      fds.push_back({request.fd.get(), POLLIN, 0});
      owners.push_back(&request);
    }
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - sys::Clock::now()).count();
    if (fds.empty() || left <= 0) return static_cast<int>(fds.size());
    int ready = ::poll(fds.data(), fds.size(), static_cast<int>(std::min<long long>(left, 100)));
    if (ready <= 0) continue;
    for (size_t i = 0; i < fds.size(); ++i)
      if (fds[i].revents != 0) ReadAnswer(*owners[i], counts);
  }
}

int BrokerFlood(int count, int hold_ms, const std::string& out, const std::vector<uint32_t>& remotes) {
  std::vector<FloodRequest> requests;
  FloodCounts counts;
  for (int i = 0; i < count; ++i) {
    uint32_t remote = remotes[static_cast<size_t>(i) / limits::kDataPortCount % remotes.size()];
    uint32_t port = limits::kFirstDataPort + static_cast<uint32_t>(i) % limits::kDataPortCount;
    auto fd = sys::UnixConnect(kBrokerSocket);
    if (!fd) {
      ++counts.other;
      continue;
    }
    auto bytes = host::EncodeBrokerRequest({host::BrokerOp::kOffer, remote, port});
    if (::send(fd->get(), bytes.data(), bytes.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(bytes.size())) {
      ++counts.other;
      continue;
    }
    ++counts.sent;
    requests.push_back({std::move(*fd), false});
  }
  auto started = sys::Clock::now();
  int unanswered = CollectAnswers(requests, counts, started + 500ms);
  WriteResult(out + ".holding", counts.Format(unanswered));
  unanswered = CollectAnswers(requests, counts, started + std::chrono::milliseconds(hold_ms));
  WriteResult(out, counts.Format(unanswered));
  return 0;
}

// --- dom0-flood ---

// One hostile call; reports its verdict as one byte on `report`.
[[noreturn]] void HostileCall(const std::string& service, int report) {
  auto say = [report](char c) { (void)!::write(report, &c, 1); };
  Result<UniqueFd> agent = sys::UnixConnect(kAgentSocket);
  for (int attempt = 0; !agent && attempt < 200; ++attempt) {
    std::this_thread::sleep_for(20ms);
    agent = sys::UnixConnect(kAgentSocket);
  }
  agent::ClientVmOptions options;
  options.target = "@adminvm";
  options.service = service;
  auto request = agent::BuildTriggerRequest(options);
  if (!agent || !request || !sys::WriteAll(agent->get(), *request)) {
    say('f');
    ::_exit(1);
  }
  auto verdict = agent::ReadAgentVerdict(agent->get());
  if (!verdict || !*verdict) {
    say('r');
    ::_exit(126);
  }
  agent->reset();  // the agent now reports the call ended and its port free
  auto transport = vchan::MakeTransportFromEnv();
  if (!transport) {
    say('f');
    ::_exit(1);
  }
  auto pending = agent::OfferDataChannel(**transport, **verdict);
  auto vchan = pending ? (*pending)->Finish(sys::Deadline::After(30s)) : Result<UniqueFd>(tl::unexpected(pending.error()));
  say(vchan ? 'c' : 'f');
  if (!vchan) ::_exit(1);
  stream::CallerConfig config;
  config.vchan = std::move(*vchan);
  config.err_fd = -1;
  auto result = stream::RunCaller(std::move(config));
  ::_exit(result ? 0 : 1);
}

int Dom0Flood(int count, const std::string& service, const std::string& out) {
  auto report = sys::Pipe();
  if (!report) return 1;
  std::vector<pid_t> children;
  for (int i = 0; i < count; ++i) {
    pid_t pid = ::fork();
    if (pid == 0) {
      report->first.reset();
      HostileCall(service, report->second.get());
    }
    if (pid > 0) children.push_back(pid);
  }
  report->second.reset();
  int connected = 0, refused = 0, failed = 0;
  char verdict;
  while (connected + refused + failed < static_cast<int>(children.size()) &&
         ::read(report->first.get(), &verdict, 1) == 1) {
    if (verdict == 'c') ++connected;
    else if (verdict == 'r') ++refused;
    else ++failed;
  }
  WriteResult(out + ".verdicts", "connected=" + std::to_string(connected) + " refused=" + std::to_string(refused) +
                                     " failed=" + std::to_string(failed));
  for (pid_t pid : children) ::waitpid(pid, nullptr, 0);
  WriteResult(out, "done");
  return 0;
}

// --- idle-triggers ---

int IdleTriggers(int count, int hold_ms, const std::string& out) {
  std::vector<UniqueFd> open;
  int refused = 0;
  for (int i = 0; i < count; ++i) {
    // Non-blocking: once the agent stops accepting, a full backlog must not
    // block us.
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, kAgentSocket, sizeof addr.sun_path - 1);
    // A full backlog (EAGAIN) while the agent catches up: retry for a while.
    int rc = -1;
    for (int attempt = 0; attempt < 2000; ++attempt) {
      rc = ::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr);
      if (rc == 0 || errno != EAGAIN) break;
      ::usleep(1000);
    }
    if (rc != 0) {
      ++refused;
      continue;
    }
    open.push_back(std::move(fd));
  }
  WriteResult(out + ".open", "open=" + std::to_string(open.size()) + " refused=" + std::to_string(refused));
  auto until = sys::Clock::now() + std::chrono::milliseconds(hold_ms);
  size_t dropped = 0;
  std::vector<bool> gone(open.size(), false);
  while (dropped < open.size() && sys::Clock::now() < until) {
    std::vector<pollfd> fds;
    std::vector<size_t> index;
    for (size_t i = 0; i < open.size(); ++i) {
      if (gone[i]) continue;
      fds.push_back({open[i].get(), POLLIN, 0});
      index.push_back(i);
    }
    if (::poll(fds.data(), fds.size(), 100) <= 0) continue;
    for (size_t k = 0; k < fds.size(); ++k) {
      if (fds[k].revents == 0) continue;
      char byte;
      if (::recv(fds[k].fd, &byte, 1, MSG_DONTWAIT) > 0) continue;  // not expected; keep waiting for EOF
      gone[index[k]] = true;
      ++dropped;
    }
  }
  WriteResult(out, "open=" + std::to_string(open.size()) + " dropped=" + std::to_string(dropped));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  ::signal(SIGPIPE, SIG_IGN);
  std::string mode = argc > 1 ? argv[1] : "";
  if (mode == "broker-flood" && argc >= 6) {
    std::vector<uint32_t> remotes;
    for (int i = 5; i < argc; ++i) remotes.push_back(static_cast<uint32_t>(std::atoi(argv[i])));
    return BrokerFlood(std::atoi(argv[2]), std::atoi(argv[3]), argv[4], remotes);
  }
  if (mode == "dom0-flood" && argc == 5) return Dom0Flood(std::atoi(argv[2]), argv[3], argv[4]);
  if (mode == "idle-triggers" && argc == 5) return IdleTriggers(std::atoi(argv[2]), std::atoi(argv[3]), argv[4]);
  std::fprintf(stderr, "usage: bounds_probe broker-flood|dom0-flood|idle-triggers ...\n");
  return 2;
}
