// Parsing of the command strings carried in MSG_EXEC_CMDLINE / MSG_JUST_EXEC
// (qrexec-protocol.md §2.12, limits in §3):
//
//   USER:[nogui:]QUBESRPC SERVICE[+ARG] SOURCE              (VM services)
//   [USER:][nogui:]QUBESRPC SERVICE[+ARG] SOURCE TYPE TARGET (dom0 services)
//   USER:[nogui:]COMMAND                                     (legacy shell command,
//                                                            only ever from dom0)
//
// ParseCommand() is the only way to get a Command from peer bytes; everything
// it returns has been checked. Every parse failure is an Error of kind
// kMalformed; the qrexec exit value for it is kExitProblem (125), see
// exit_status.h ExitCodeForError().
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "base/result.h"

namespace qrexec::exec {

// Is there a "USER:" prefix to strip? The agent and the daemon parse with
// kPresent; the fork server receives the command without it (§2.10).
enum class UserPrefix { kPresent, kAbsent };

// Requested target of a 4-token (dom0) command; kNone for 2-token commands.
enum class TargetType { kNone, kName, kKeyword };

// The RPC part of a command: what follows "QUBESRPC ".
struct RpcCall {
  // Exactly the text after "QUBESRPC " (e.g. "foo.Bar+arg A" or
  // "foo.Bar+arg A keyword adminvm"). This, plus one NUL, is the service
  // descriptor header written to socket/TCP services (§4.2).
  std::string rpc_text;
  // First token as received: "foo.Bar+arg", or "foo.Bar" when no '+' was
  // sent. This is QREXEC_SERVICE_FULL_NAME. 1..65000 bytes.
  std::string descriptor;
  // Text before the first '+': 1..255 bytes (NAME_MAX).
  std::string service_name;
  // Text after the first '+'; present (possibly empty) iff the descriptor
  // contains a '+'. May itself contain '+'.
  std::optional<std::string> argument;
  // Second token: the calling qube (non-empty).
  std::string source;
  // 4-token commands only: TYPE ("name" / "keyword") and TARGET (non-empty;
  // a keyword is given without its '@', e.g. "adminvm").
  TargetType target_type = TargetType::kNone;
  std::string target;
};

struct Command {
  // Text before the first ':' (may be "DEFAULT" before the daemon replaced
  // it). Empty when parsed with UserPrefix::kAbsent. Never contains ':'.
  std::string user;
  // "nogui:" was present (wait-for-session is then ignored, fork server not used).
  bool nogui = false;
  // The command after "USER:" and "nogui:" ("QUBESRPC ..." or the shell text).
  std::string body;
  // Set for QUBESRPC commands.
  std::optional<RpcCall> rpc;
  // Legacy commands: the shell command (== body), run as `$SHELL -c`.
  // Empty for RPC commands.
  std::string shell_command;

  bool is_rpc() const { return rpc.has_value(); }
};

// Parses one command string (without the trailing NUL of the wire form).
// Rejected (kMalformed):
//   * no ':' with UserPrefix::kPresent, or an empty user;
//   * any NUL byte;
//   * "QUBESRPC" not followed by exactly one space (so "QUBESRPC",
//     "QUBESRPC  x" and "QUBESRPCx" are errors, not legacy commands);
//   * an empty descriptor, a descriptor over 65000 bytes, a service name
//     (before '+') that is empty or over 255 bytes;
//   * a descriptor containing '/' or a service name "." / ".." (our own
//     defence: the descriptor becomes a file name in the service and config
//     directories; the daemon never sends these because it sanitises names);
//   * other than exactly 2 or 4 space-separated non-empty tokens after
//     "QUBESRPC " (double or trailing spaces make empty tokens);
//   * in 4-token form a TYPE other than "name" / "keyword", or empty TARGET;
//   * an empty legacy command.
Result<Command> ParseCommand(std::string_view untrusted_command,
                             UserPrefix user_prefix = UserPrefix::kPresent);

// "DEFAULT:rest" -> "<default_user>:rest"; any other command is returned
// unchanged (the daemon's substitution before forwarding to an agent).
std::string SubstituteDefaultUser(std::string_view command, std::string_view default_user);

// Builds "USER:QUBESRPC DESCRIPTOR SOURCE" (no NUL). `user` may be empty, in
// which case no "USER:" prefix is written (dom0/fork-server form).
std::string FormatRpcCommand(std::string_view user, std::string_view descriptor,
                             std::string_view source);

}  // namespace qrexec::exec
