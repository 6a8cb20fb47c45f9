// Command line of qrexec-client (qrexec-protocol.md §1.3). ParseClientOptions
// never exits; it returns a ClientConfig or the exit code and message (usage
// errors 1, the -p / --use-stdin-socket cases 2, -h 0).
#pragma once

#include <optional>
#include <string>
#include <variant>

namespace qrexec::daemon {

// -c REQUEST_ID,SRC_DOMAIN_NAME,SRC_DOMAIN_ID
struct ConnectRequest {
  std::string ident;
  std::string source_name;
  int source_domid = 0;
};

struct ClientConfig {
  std::string domain;                        // -d
  std::optional<std::string> local_program;  // -l
  bool just_exec = false;                    // -e
  bool no_exit_code = false;                 // -E
  std::optional<ConnectRequest> connect;     // -c
  bool filter_stdout = false;                // -t
  bool filter_stderr = false;                // -T
  int timeout_seconds = 10;                  // -w (0 = none)
  bool wait_connection_end = false;          // -W
  bool kill_after = false;                   // -k
  std::string socket_dir = "/var/run/qubes";
  std::optional<std::string> prefix_data;  // -p
  bool use_stdin_socket = false;
  // Internal (used by qrexec-daemon for dom0 services): the data port is
  // already allocated and announced; skip the daemon socket.
  std::optional<unsigned> data_port;
  std::string qubesd_socket = "/run/qubesd.sock";  // $QREXEC_QUBESD_SOCKET
  std::string command;
};

struct ClientParseExit {
  int code;
  std::string message;
  bool to_stdout = false;
};

std::variant<ClientConfig, ClientParseExit> ParseClientOptions(int argc, char** argv);

}  // namespace qrexec::daemon
