// qrexec-policy-daemon: serves policy.sock, policy.EvalSimple and
// policy.EvalGUI (policy-language.md §5.1, qrexec-protocol.md §1.7, §5).
#include <getopt.h>
#include <grp.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "base/log.h"
#include "base/malloc_tuning.h"
#include "event/loop.h"
#include "policy/qubesd_client.h"
#include "policy_server.h"
#include "policy_store.h"

namespace qrexec::policy_tools {
namespace {

void Usage(FILE* out) {
  std::fprintf(out,
               "usage: qrexec-policy-daemon [--policy-path DIR]... [--socket-path PATH]\n"
               "         [--eval-socket-path PATH] [--gui-socket-path PATH]\n"
               "         [--legacy-path DIR] [--system-info FILE | --qubesd-socket PATH]\n"
               "         [--system-info-ttl MS] [--agent-socket PATH] [--direct-agent]\n"
               "         [--qrexec-client PATH] [--request-timeout MS]\n");
}

bool ParseMs(const char* text, std::chrono::milliseconds& out) {
  char* end = nullptr;
  long value = std::strtol(text, &end, 10);
  if (end == text || *end != '\0' || value < 0) return false;
  out = std::chrono::milliseconds(value);
  return true;
}

enum Opt {
  kPolicyPath = 1000,
  kSocketPath,
  kEvalSocketPath,
  kGuiSocketPath,
  kLegacyPath,
  kSystemInfo,
  kQubesdSocket,
  kSystemInfoTtl,
  kAgentSocket,
  kDirectAgent,
  kQrexecClient,
  kRequestTimeout,
  kHelp
};

int ParseArgs(int argc, char** argv, StoreOptions& store, ServerOptions& server) {
  static const option kLong[] = {{"policy-path", required_argument, nullptr, kPolicyPath},
                                 {"socket-path", required_argument, nullptr, kSocketPath},
                                 {"eval-socket-path", required_argument, nullptr, kEvalSocketPath},
                                 {"gui-socket-path", required_argument, nullptr, kGuiSocketPath},
                                 {"legacy-path", required_argument, nullptr, kLegacyPath},
                                 {"system-info", required_argument, nullptr, kSystemInfo},
                                 {"qubesd-socket", required_argument, nullptr, kQubesdSocket},
                                 {"system-info-ttl", required_argument, nullptr, kSystemInfoTtl},
                                 {"agent-socket", required_argument, nullptr, kAgentSocket},
                                 {"direct-agent", no_argument, nullptr, kDirectAgent},
                                 {"qrexec-client", required_argument, nullptr, kQrexecClient},
                                 {"request-timeout", required_argument, nullptr, kRequestTimeout},
                                 {"help", no_argument, nullptr, kHelp},
                                 {nullptr, 0, nullptr, 0}};
  store.qubesd_socket = policy::QubesdSocketPath();
  for (int opt; (opt = getopt_long(argc, argv, "", kLong, nullptr)) != -1;) {
    switch (opt) {
      case kPolicyPath:
        store.load.dirs.push_back(optarg);
        break;
      case kSocketPath:
        server.socket_path = optarg;
        break;
      case kEvalSocketPath:
        server.eval_socket_path = optarg;
        break;
      case kGuiSocketPath:
        server.gui_socket_path = optarg;
        break;
      case kLegacyPath:
        store.load.legacy_dir = optarg;
        break;
      case kSystemInfo:
        store.system_info_file = optarg;
        break;
      case kQubesdSocket:
        store.qubesd_socket = optarg;
        break;
      case kSystemInfoTtl:
        if (!ParseMs(optarg, store.system_info_ttl)) {
          std::fprintf(stderr, "qrexec-policy-daemon: bad --system-info-ttl: %s\n", optarg);
          return 2;
        }
        break;
      case kRequestTimeout:
        if (!ParseMs(optarg, server.request_timeout) || server.request_timeout.count() == 0) {
          std::fprintf(stderr, "qrexec-policy-daemon: bad --request-timeout: %s\n", optarg);
          return 2;
        }
        break;
      case kAgentSocket:
        server.agent.agent_socket = optarg;
        break;
      case kDirectAgent:
        server.agent.direct_for_all = true;
        break;
      case kQrexecClient:
        server.agent.qrexec_client = optarg;
        break;
      case kHelp:
        Usage(stdout);
        std::exit(0);
      default:
        Usage(stderr);
        return 2;
    }
  }
  if (optind != argc) {
    Usage(stderr);
    return 2;
  }
  return 0;
}

// Many clients at once need descriptors: raise the soft limit to the hard one.
void RaiseFdLimit() {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    (void)::setrlimit(RLIMIT_NOFILE, &limit);
  }
}

// Like the reference: umask 007 and group "qubes" when running as root.
void SetUpPermissions() {
  ::umask(007);
  if (::geteuid() != 0) return;
  if (const group* qubes = ::getgrnam("qubes"); qubes != nullptr) {
    if (::setgid(qubes->gr_gid) < 0) LOG_WARNING("setgid(qubes) failed");
  }
}

int Main(int argc, char** argv) {
  log::SetProgramName("qrexec-policy-daemon");
  StoreOptions store_options;
  ServerOptions server_options;
  if (int rc = ParseArgs(argc, argv, store_options, server_options); rc != 0) return rc;
  ::signal(SIGPIPE, SIG_IGN);
  ::signal(SIGCHLD, SIG_IGN);  // qrexec-client children are reaped by the kernel
  SetUpPermissions();
  RaiseFdLimit();

  auto loop = event::Loop::Create();
  if (!loop) {
    LOG_ERROR("{}", loop.error().ToString());
    return 1;
  }
  auto store = PolicyStore::Create(**loop, std::move(store_options));
  if (!store) {
    LOG_ERROR("cannot start: {}", store.error().ToString());
    return 1;
  }
  auto server = PolicyServer::Create(**loop, **store, std::move(server_options));
  if (!server) {
    LOG_ERROR("cannot listen: {}", server.error().ToString());
    return 1;
  }
  // SIGTERM/SIGINT end the loop cleanly (children get an empty mask back).
  event::Loop* raw_loop = loop->get();
  auto stop = [raw_loop](int) {
    if (raw_loop->quitting()) return;  // both signals at once: one message
    LOG_INFO("terminating");
    raw_loop->Quit();
  };
  auto term_watch = raw_loop->WatchSignal(SIGTERM, stop);
  if (!term_watch) {
    LOG_ERROR("signalfd failed: {}", term_watch.error().ToString());
    return 1;
  }
  auto int_watch = raw_loop->WatchSignal(SIGINT, stop);
  if (!int_watch) {
    LOG_ERROR("signalfd failed: {}", int_watch.error().ToString());
    return 1;
  }
  LOG_INFO("ready");
  if (auto status = (*loop)->Run(); !status) {
    LOG_ERROR("{}", status.error().ToString());
    return 1;
  }
  return 0;
}

}  // namespace
}  // namespace qrexec::policy_tools

int main(int argc, char** argv) {
  qrexec::sys::ReexecWithoutMallocCache(argv);  // may not return (base/malloc_tuning.h)
  return qrexec::policy_tools::Main(argc, argv);
}
