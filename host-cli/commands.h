// qrexec-host subcommands (man/qrexec-host.1).
#pragma once

#include <string>
#include <vector>

namespace qrexec::host_cli {

struct GlobalOptions {
  std::string config_path;  // --config, $QREXEC_HOST_CONFIG, or the default
  std::string state_dir;    // --state-dir: overrides the config's
  std::string bin_dir;      // beside this executable unless the config says
};

int CmdUp(const GlobalOptions& global, const std::vector<std::string>& args);
int CmdLs(const GlobalOptions& global, const std::vector<std::string>& args);
int CmdStart(const GlobalOptions& global, const std::vector<std::string>& args);
int CmdKill(const GlobalOptions& global, const std::vector<std::string>& args);
int CmdRun(const GlobalOptions& global, const std::vector<std::string>& args);
int CmdCall(const GlobalOptions& global, const std::vector<std::string>& args);

// Quotes one word for a POSIX shell ('...' with embedded quotes escaped).
std::string ShellQuote(const std::string& word);

}  // namespace qrexec::host_cli
