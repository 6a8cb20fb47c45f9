// qrexec-policy-agent: serves policy.Ask and policy.Notify on a Unix socket
// (policy-language.md §5.4, qrexec-protocol.md §5.5). Asks go to the
// controlling terminal one at a time; --assume-yes / --assume-no answer
// without asking (scripted use).
#include <fcntl.h>
#include <fmt/format.h>
#include <getopt.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>

#include "agent_prompt.h"
#include "base/escape_filter.h"
#include "base/log.h"
#include "base/sys.h"

namespace qrexec::policy_tools {
namespace {

constexpr size_t kMaxAgentRequest = 1 << 20;
constexpr int kMaxConnections = 64;
constexpr int kMaxPromptAttempts = 5;

enum class Mode { kInteractive, kAssumeYes, kAssumeNo };

struct AgentOptions {
  std::string socket_path = "/var/run/qubes/policy-agent.sock";
  Mode mode = Mode::kInteractive;
};

void Print(std::string_view text) { (void)sys::WriteAll(1, text); }

// The terminal the prompts go to: /dev/tty, else stdin/stdout when that is a
// terminal. Prompts are serialised by the caller.
class Terminal {
 public:
  Terminal() {
    tty_.reset(::open("/dev/tty", O_RDWR | O_CLOEXEC | O_NOCTTY));
    if (tty_.valid()) {
      in_ = out_ = tty_.get();
    } else if (::isatty(0)) {
      in_ = 0;
      out_ = 1;
    }
  }
  bool available() const { return in_ >= 0; }
  void Write(std::string_view text) { (void)sys::WriteAll(out_, text); }
  // One line without its newline; nullopt at EOF or on error.
  std::optional<std::string> ReadLine() {
    std::string line;
    char c;
    for (;;) {
      ssize_t n = ::read(in_, &c, 1);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return line.empty() ? std::nullopt : std::optional(line);
      if (c == '\n') return line;
      if (line.size() < 4096) line.push_back(c);
    }
  }

 private:
  UniqueFd tty_;
  int in_ = -1;
  int out_ = -1;
};

class Agent {
 public:
  explicit Agent(AgentOptions options) : options_(std::move(options)) {}

  std::string Handle(const AgentRequest& request) {
    if (request.service == "policy.Ask") return HandleAsk(request);
    if (request.service == "policy.Notify") {
      auto notify = DecodeNotify(request.untrusted_json);
      if (!notify) {
        LOG_WARNING("bad policy.Notify request: {}", notify.error().ToString());
        return {};
      }
      std::lock_guard lock(output_mutex_);
      Print(FormatNotify(*notify));
      return {};
    }
    LOG_WARNING("unknown service '{}'", SanitizeForLog(request.service));
    return {};
  }

 private:
  std::string HandleAsk(const AgentRequest& request) {
    auto ask = DecodeAsk(request.untrusted_json);
    if (!ask) {
      LOG_WARNING("bad policy.Ask request: {}", ask.error().ToString());
      return "deny";
    }
    std::lock_guard lock(output_mutex_);  // one prompt at a time
    std::string answer = Decide(*ask);
    Print(SanitizeForLog(fmt::format("policy.Ask: {} -> {}{} targets=[{}] default={}: {}",
                                     ask->source, ask->service, ask->argument,
                                     fmt::join(ask->targets, ", "), ask->default_target, answer)) +
          "\n");
    return answer;
  }

  std::string Decide(const AskRequest& ask) {
    switch (options_.mode) {
      case Mode::kAssumeNo:
        return "deny";
      case Mode::kAssumeYes:
        return ask.default_target.empty() ? "deny" : "allow:" + ask.default_target;
      case Mode::kInteractive:
        break;
    }
    Terminal terminal;
    if (!terminal.available()) {
      LOG_WARNING("no terminal to ask on; denying");
      return "deny";
    }
    for (int attempt = 0; attempt < kMaxPromptAttempts; ++attempt) {
      terminal.Write(FormatPrompt(ask));
      auto line = terminal.ReadLine();
      if (!line) return "deny";
      if (auto answer = InterpretAnswer(ask, *line)) return *answer;
      terminal.Write("Not understood.\n");
    }
    return "deny";
  }

  AgentOptions options_;
  std::mutex output_mutex_;
};

void ServeConnection(Agent& agent, UniqueFd conn) {
  auto untrusted =
      sys::ReadToEof(conn.get(), kMaxAgentRequest, sys::Deadline::After(std::chrono::seconds(30)));
  if (!untrusted) {
    LOG_WARNING("reading request: {}", untrusted.error().ToString());
    return;
  }
  auto request = DecodeAgentRequest(*untrusted);
  if (!request) {
    LOG_WARNING("bad request: {}", request.error().ToString());
    return;
  }
  std::string reply = agent.Handle(*request);
  if (auto status = sys::WriteAll(conn.get(), reply); !status)
    LOG_WARNING("writing reply: {}", status.error().ToString());
}

void Usage(FILE* out) {
  std::fprintf(out,
               "usage: qrexec-policy-agent [-s|--socket-path PATH] [--assume-yes|--assume-no]\n");
}

int Main(int argc, char** argv) {
  log::SetProgramName("qrexec-policy-agent");
  AgentOptions options;
  enum { kAssumeYes = 1000, kAssumeNo };
  static const option kLong[] = {{"socket-path", required_argument, nullptr, 's'},
                                 {"assume-yes", no_argument, nullptr, kAssumeYes},
                                 {"assume-no", no_argument, nullptr, kAssumeNo},
                                 {"help", no_argument, nullptr, 'h'},
                                 {nullptr, 0, nullptr, 0}};
  for (int opt; (opt = getopt_long(argc, argv, "s:h", kLong, nullptr)) != -1;) {
    switch (opt) {
      case 's':
        options.socket_path = optarg;
        break;
      case kAssumeYes:
        options.mode = Mode::kAssumeYes;
        break;
      case kAssumeNo:
        options.mode = Mode::kAssumeNo;
        break;
      case 'h':
        Usage(stdout);
        return 0;
      default:
        Usage(stderr);
        return 2;
    }
  }
  if (optind != argc) {
    Usage(stderr);
    return 2;
  }
  ::signal(SIGPIPE, SIG_IGN);
  auto listener = sys::UnixListen(options.socket_path);
  if (!listener) {
    LOG_ERROR("cannot listen on {}: {}", options.socket_path, listener.error().ToString());
    return 1;
  }
  Agent agent(options);
  std::atomic<int> active{0};
  for (;;) {
    auto conn = sys::Accept(listener->get());
    if (!conn) {
      LOG_WARNING("accept: {}", conn.error().ToString());
      continue;
    }
    if (active.load() >= kMaxConnections) {
      LOG_WARNING("too many connections; dropping one");
      continue;
    }
    ++active;
    std::thread([&agent, &active, fd = std::move(*conn)]() mutable {
      ServeConnection(agent, std::move(fd));
      --active;
    }).detach();
  }
}

}  // namespace
}  // namespace qrexec::policy_tools

int main(int argc, char** argv) { return qrexec::policy_tools::Main(argc, argv); }
