// qrexec::stream — the data-channel engine of one call (qrexec-protocol.md
// §2.5 "Data vchan" and §2.7), for both ends of the data channel.
//
//  * Role::kCaller — the side that asked for the call and supplies its
//    stdin: qrexec-client-vm, qrexec-client for dom0 -> VM. It sends
//    MSG_DATA_STDIN and receives STDOUT, STDERR and EXIT_CODE.
//  * Role::kService — the side that runs the service: the agent's per-call
//    handler, the daemon child / qrexec-client running a dom0 service. It
//    receives STDIN and sends STDOUT, STDERR and finally one EXIT_CODE.
//
// The vchan is a connected stream socket (lib/vchan hands one back for every
// backend). Both ends first exchange HELLO{version}; the negotiated version
// min(own, peer) must be >= 2 and only selects the maximum chunk size (4096
// for v2, 65536 for v3+). Any received message longer than that chunk size is
// fatal (ErrorKind::kMalformed), as is an unknown type.
//
// Threading and ownership: a Stream runs on one event::Loop (the caller's
// thread), never blocks, and owns every UniqueFd in its config (the caller's
// err_fd is borrowed: written through a private dup). All local fds are
// switched to O_NONBLOCK while the stream runs and get their original file
// status flags back before they are closed, so a terminal shared with the
// parent shell is left as found. Regular files and /dev/null (stdin/stdout
// redirected) work: the loop treats them as always ready. A child pid given
// in a config is reaped by the stream (pidfd, event::ChildWatch); nobody
// else may wait for it.
//
// SIGPIPE: writes to sockets use send(MSG_NOSIGNAL); writes to pipes could
// raise SIGPIPE, so starting a Stream installs (once per process, see
// InstallSigpipeGuard) an empty SIGPIPE handler. A handler, unlike SIG_IGN, is
// reset to the default by execve, so children spawned later are unaffected;
// our writers see EPIPE, which closes that one destination (further data for
// it is dropped) without ending the call.
//
// Back-pressure: each local destination and the outgoing vchan queue has a
// bounded buffer (buffer_limit, default limits::kStreamBufferLimit). A
// source is read only while its destination holds less than the limit, one
// chunk at a time; received messages wait, unparsed, in a receive window of
// two maximum messages (2 * (65536 + 8) bytes) while their destination is
// full, and the vchan is not read while that window is full. So a stream
// never holds more than:
//   outgoing: limit + 8 + max chunk (+ a few empty control messages and the
//             prefix data),
//   incoming: 2 * (65536 + 8) + per destination (limit + max chunk),
// however slow the peer or the local reader is. buffered_bytes() and
// peak_buffered_bytes() expose the total for tests.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "base/limits.h"
#include "base/result.h"
#include "base/sys.h"
#include "base/unique_fd.h"
#include "event/loop.h"
#include "proto/wire.h"

namespace qrexec::stream {

enum class Role { kCaller, kService };

// Exit status conventions (§1.5, §2.7).
inline constexpr int kExitVchanClosedEarly = 255;  // no MSG_DATA_EXIT_CODE received
inline constexpr int kExitShortExitCode = 255;     // EXIT_CODE with len < 4
inline constexpr int kExitServiceNotFound = 127;
inline constexpr int kExitServiceProblem = 125;

// A raw wait status (from waitpid) as the wire value: the exit code, or
// 128+signal when the process was killed by a signal.
int WaitStatusToExitCode(int wait_status);

// Remote exit code if it is non-zero, else the local program's (§1.5, §7.7):
// qrexec-client-vm / qrexec-client -l with a LOCAL_PROGRAM.
inline int CombineWithLocalProgram(int remote_code, int local_code) {
  return remote_code != 0 ? remote_code : local_code;
}

// Installs the empty SIGPIPE handler described above (idempotent; Stream
// construction calls it). Leaves an existing non-default handler alone.
void InstallSigpipeGuard();

// ---------------------------------------------------------------------------
// Caller side.
struct CallerConfig {
  // Connected data vchan (stream socket). Owned.
  UniqueFd vchan;
  // Local input read into MSG_DATA_STDIN; EOF -> zero-length STDIN. May be
  // invalid: the input is then treated as already at EOF (an empty STDIN is
  // sent right after the hello, after any prefix data).
  UniqueFd in;
  // Local output for STDOUT. Zero-length STDOUT (or the end of the call)
  // closes it (shutdown(SHUT_WR) for sockets). May be invalid: data dropped.
  UniqueFd out;
  // Borrowed: where STDERR goes (normally 2); the stream writes through a
  // private dup, never closes or shuts it down, and may equal `out`'s fd.
  // -1: dropped.
  int err_fd = 2;
  // Single-socket mode (--use-stdin-socket, and a LOCAL_PROGRAM connected by
  // one socketpair): `in` is a stream socket used for both directions and
  // `out` must be invalid. Remote stdout EOF -> shutdown(SHUT_WR) on it.
  bool single_socket = false;
  // -t / -T: replace unsafe bytes (base/escape_filter.h) before writing.
  bool filter_stdout = false;
  bool filter_stderr = false;
  // -p DATA: sent as MSG_DATA_STDIN before any local input.
  std::string prefix_data;
  // Our HELLO version (tests use 2 or 3 to check chunking).
  uint32_t own_version = proto::kProtocolVersion;
  // Set when the hello was already exchanged on `vchan` (see Handshake());
  // the stream then sends and expects no HELLO and uses this version.
  std::optional<uint32_t> negotiated_version;
  // Per-direction buffer bound (bytes). Tests may lower it.
  size_t buffer_limit = limits::kStreamBufferLimit;
  // Switch to single-socket mode when SIGUSR1 arrives (see
  // Stream::SwitchToSingleSocket): the stream then owns a SignalWatch for
  // SIGUSR1 on its loop. Only for single-threaded processes; block SIGUSR1
  // (or start the stream) before spawning the program that may send it.
  bool switch_on_sigusr1 = false;
  // LOCAL_PROGRAM mode: the local program's pid (our child; `in` is its
  // stdout, `out` its stdin, or one socket with single_socket). The stream
  // also waits for it and returns CombineWithLocalProgram(remote, local).
  // -1: no local program.
  pid_t local_program_pid = -1;
};

// ---------------------------------------------------------------------------
// Service side.
struct ServiceConfig {
  // Connected data vchan (stream socket). Owned.
  UniqueFd vchan;
  // Where MSG_DATA_STDIN goes: the child's stdin (pipe or socket). Zero-length
  // STDIN closes it (shutdown(SHUT_WR) for sockets). For socket/TCP services
  // pass the service socket here and set socket_service (the same fd is then
  // read for STDOUT; child_stdout must be invalid).
  UniqueFd child_stdin;
  // Read into MSG_DATA_STDOUT; EOF -> zero-length STDOUT.
  UniqueFd child_stdout;
  // Read into MSG_DATA_STDERR; EOF -> zero-length STDERR. Invalid: no
  // separate stderr, so a zero-length STDERR is sent right after the hello.
  UniqueFd child_stderr;
  // A socket or TCP service (§4.2): one socket for both directions, no
  // child process, reports exit code 0.
  bool socket_service = false;
  // The service process (our child, not yet reaped), or -1 for none. The
  // stream reaps it (pidfd) and reports WaitStatusToExitCode(status). With
  // no child (and not a socket service) the exit code is 0.
  pid_t child_pid = -1;
  // rpc-config exit-on-service-eof (socket services): when the service closes
  // its output, send stdout EOF and the exit code (0) without waiting for the
  // caller's stdin EOF.
  bool exit_on_service_eof = false;
  // rpc-config exit-on-client-eof (socket services): when the caller's stdin
  // EOF arrives, stop reading the service, send stdout EOF and the exit code.
  bool exit_on_client_eof = false;
  // As in CallerConfig: SIGUSR1 (sent by the service to QREXEC_AGENT_PID)
  // switches to single-socket mode.
  bool switch_on_sigusr1 = false;
  // §4.6: a copy of the service's stderr for syslog. Called once, when the
  // service first writes to its stderr (a quiet service costs nothing);
  // returns the fd to copy into (a logger's stdin) or an invalid fd for no
  // copy. Best effort: the copy never holds up the call; bytes the fd cannot
  // take at once are dropped (logged once), and the fd is closed with the
  // stream's other fds.
  std::function<UniqueFd()> open_stderr_copy;
  uint32_t own_version = proto::kProtocolVersion;
  // As in CallerConfig: skip the hello, it already happened (Handshake()).
  std::optional<uint32_t> negotiated_version;
  size_t buffer_limit = limits::kStreamBufferLimit;
};

// One running data stream on an event loop. Create it, run the loop; the
// done callback fires exactly once (from inside the loop) with the outcome,
// after every fd the stream owns has been closed:
//  * caller: the exit status to use (remote code, 255 when the vchan closed
//    first, combined with the local program's), or an error for a broken
//    peer. A vchan that closes first also ends the local outputs (after
//    what they still hold is written), so a local program sees EOF on its
//    stdin; the call still waits for that program to exit. Errors: a broken
//    peer (kMalformed: bad hello, len > max chunk, unknown type) or a local
//    failure (kInternal).
//  * service: the exit code sent, or kMalformed (bad peer), kDisconnected
//    (the vchan closed or failed before the exit code went out; the child is
//    not waited for any more), kInternal.
// Destroying a Stream early cancels it (callbacks never fire afterwards) and
// closes its fds; it never kills a child.
class Stream {
 public:
  using DoneCallback = std::function<void(Result<int>)>;

  static Result<std::unique_ptr<Stream>> StartCaller(event::Loop& loop, CallerConfig config,
                                                     DoneCallback done);
  static Result<std::unique_ptr<Stream>> StartService(event::Loop& loop, ServiceConfig config,
                                                      DoneCallback done);
  virtual ~Stream() = default;

  virtual Role role() const = 0;
  // Negotiated version, 0 before the peer's hello arrived.
  virtual uint32_t negotiated_version() const = 0;
  // Bytes currently held in the stream's buffers (all directions, including
  // the partially received message). For back-pressure tests.
  virtual size_t buffered_bytes() const = 0;
  // Highest buffered_bytes() seen so far.
  virtual size_t peak_buffered_bytes() const = 0;

  // Single-socket switch (§2.7): a service (or LOCAL_PROGRAM) that got
  // QREXEC_AGENT_PID may signal SIGUSR1 to ask that its stdin socket be used
  // for both directions. From now on the stream stops reading the old output
  // (service: child stdout; caller: `in`), closes it without sending an EOF,
  // and reads the data to send from the socket it writes received data to
  // (service: child_stdin; caller: `out`). Idempotent. That socket may
  // already have passed on its EOF (shutdown(SHUT_WR)): with
  // switch_on_sigusr1 the stream keeps a copy of it for the switch, so a
  // program can still answer after its input ended. kInternal when there is
  // no such socket (a pipe, or closed without switch_on_sigusr1) or the
  // output already ended.
  virtual Status SwitchToSingleSocket() = 0;

 protected:
  Stream() = default;
};

// Convenience for per-call processes: builds a private loop, runs the stream
// to completion, returns the done callback's value.
Result<int> RunCaller(CallerConfig config);
Result<int> RunService(ServiceConfig config);

// The service could not be started (§2.7): after the hello (done here unless
// `negotiated_version` says it already happened), sends zero-length STDOUT,
// zero-length STDERR and EXIT_CODE(exit_code) — normally 127 (not found) or
// 125 (problem). Blocking; for the per-call handler before any loop runs.
// `deadline` bounds the whole exchange (kTimedOut). A dom0 service end
// (qrexec-client -c) sends the STDERR EOF first (kStderrFirst): its
// service's stderr goes to the log, never to the stream, so that end
// announces the STDERR EOF right after the hello on every call, and a
// failure then adds STDOUT EOF and EXIT_CODE, as Qubes' qrexec-client does.
enum class FailureStreams { kStdoutAndStderr, kStderrFirst };
Status SendSpawnFailure(int vchan_fd, int exit_code,
                        uint32_t own_version = proto::kProtocolVersion,
                        std::optional<uint32_t> negotiated_version = std::nullopt,
                        const sys::Deadline& deadline = sys::Deadline::Never(),
                        FailureStreams streams = FailureStreams::kStdoutAndStderr);

// Blocking data-channel hello: sends HELLO{own_version}, reads the peer's
// (type 0x300, len 4), returns min(own, peer); kMalformed if < 2 or
// malformed, kDisconnected on EOF, kTimedOut. For processes that want the
// hello done before spawning the service (so that a spawn failure can be
// reported with SendSpawnFailure): pass the result as the config's
// negotiated_version so the Stream does not repeat the hello.
Result<uint32_t> Handshake(int vchan_fd, uint32_t own_version = proto::kProtocolVersion,
                           const sys::Deadline& deadline = sys::Deadline::Never());

}  // namespace qrexec::stream
