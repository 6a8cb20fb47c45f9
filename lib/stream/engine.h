// The stream engine's private declarations (stream.h is the interface):
// one Engine runs one data stream. Its methods live in two files along the
// two sides of a stream: stream.cc (set-up, the vchan side, the end-of-call
// rules, bookkeeping) and local_io.cc (the local sources and sinks: the
// child's or the caller's own descriptors).
#pragma once

#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <array>
#include <functional>
#include <optional>
#include <span>
#include <string>

#include "base/limits.h"
#include "base/result.h"
#include "base/unique_fd.h"
#include "event/loop.h"
#include "stream/byte_queue.h"
#include "stream/decoder.h"
#include "stream/stream.h"

namespace qrexec::stream::internal {

// A local fd switched to O_NONBLOCK for the stream's lifetime.
struct LocalFd {
  UniqueFd owned;
  int fd = -1;
  int saved_flags = -1;
  bool is_socket = false;

  Status Adopt(int raw) {
    fd = raw;
    struct stat st {};
    is_socket = ::fstat(raw, &st) == 0 && S_ISSOCK(st.st_mode);
    saved_flags = ::fcntl(raw, F_GETFL);
    if (saved_flags < 0) return ErrnoError("fcntl(F_GETFL)");
    if ((saved_flags & O_NONBLOCK) == 0 && ::fcntl(raw, F_SETFL, saved_flags | O_NONBLOCK) != 0) {
      return ErrnoError("fcntl(F_SETFL)");
    }
    return Ok();
  }
  // Restores the flags (the description may be shared with other processes,
  // e.g. a terminal) and closes the fd if owned.
  void Close() {
    if (fd >= 0 && saved_flags >= 0) ::fcntl(fd, F_SETFL, saved_flags);
    owned.reset();
    fd = -1;
  }
};

// Local destination of received data.
struct Sink {
  LocalFd local;
  bool filter = false;
  ByteQueue buf;
  bool eof_pending = false;
  bool closed = true;
  // EOF is passed on with shutdown(SHUT_WR) for sockets; never for the
  // caller's stderr, which is the process's own (borrowed) stderr.
  bool shutdown_on_close = true;
  event::FdWatch watch;
};

// Local source of data to send.
struct Source {
  LocalFd local;
  proto::MsgType type = proto::MsgType::kDataStdin;
  bool eof = true;
  event::FdWatch watch;
};

class Engine final : public Stream {
 public:
  Engine(event::Loop& loop, Role role, uint32_t own_version,
         std::optional<uint32_t> negotiated_version, size_t limit, DoneCallback done)
      : loop_(loop),
        role_(role),
        own_version_(own_version),
        limit_(limit),
        done_(std::move(done)),
        decoder_(role, own_version, negotiated_version) {}

  ~Engine() override { CloseAll(); }

  Status InitCaller(CallerConfig& config);
  Status InitService(ServiceConfig& config);

  Role role() const override { return role_; }
  uint32_t negotiated_version() const override { return decoder_.version(); }
  size_t buffered_bytes() const override {
    size_t total = rx_.size() + tx_.size();
    for (const Sink& sink : sinks_) total += sink.buf.size();
    return total;
  }
  size_t peak_buffered_bytes() const override { return peak_; }
  Status SwitchToSingleSocket() override;

 private:
  static constexpr size_t kRxCap = 2 * (limits::kMaxDataChunkV3 + proto::kHeaderSize);

  Status InitCommon(UniqueFd vchan);
  Status OpenSink(size_t index, UniqueFd owned, int raw, bool filter);
  Status OpenSource(size_t index, UniqueFd owned, proto::MsgType type);
  Status StartRunning(bool switch_on_sigusr1);
  void OnChildExit(int status);
  void OnHello();

  void OnVchan(event::Ready ready);
  bool SinksHaveRoom() const;
  void ReadVchan();
  void FlushVchan();
  void ProcessRx();
  bool HandleEvent(const InboundEvent& event);
  void OnExitCode(int code);

  void OnSource(size_t index);
  void SourceEof(size_t index);
  void StopSource(size_t index);
  void OnSink(size_t index, event::Ready ready);
  // Service: the service's input reported a hang-up or an error (a pipe
  // whose reader is gone; a socket shut down in both directions, e.g. the
  // service closed it or shut down its reading side after its writing side).
  // Its input ends as if the caller's EOF had been passed on; input still
  // queued or arriving later is dropped, as in Qubes.
  void ServiceInputGone();
  // Service: stop reading the service's output and send the stdout EOF
  // (exit-on-client-eof).
  void EndServiceOutput();
  void WriteSink(size_t index);
  // One non-blocking write of `data` to the sink's fd; returns how much it took
  // (0 on EAGAIN or error).
  static size_t TryWriteDirect(const Sink& sink, std::span<const std::byte> data);
  void CloseSink(size_t index, bool discard);

  void Queue(proto::MsgType type, std::span<const std::byte> payload);
  void NoteBuffered() { peak_ = std::max(peak_, buffered_bytes()); }
  void LogWrongDirection();
  // Service stderr: the best-effort copy for syslog (ServiceConfig).
  void CopyStderr(std::span<const std::byte> data);
  void Update();
  void CheckServiceDone();
  void CheckCallerDone();
  void Fail(Error error);
  void Finish(Result<int> outcome);
  void CloseAll();

  Sink* SinkFor(Channel channel) {
    switch (channel) {
      case Channel::kStdout:
        return role_ == Role::kCaller ? &sinks_[0] : nullptr;
      case Channel::kStderr:
        return role_ == Role::kCaller ? &sinks_[1] : nullptr;
      case Channel::kStdin:
        return role_ == Role::kService ? &sinks_[0] : nullptr;
    }
    return nullptr;
  }

  event::Loop& loop_;
  Role role_;
  uint32_t own_version_;
  size_t limit_;
  DoneCallback done_;
  InboundDecoder decoder_;
  bool logged_wrong_direction_ = false;
  std::function<UniqueFd()> open_stderr_copy_;
  UniqueFd stderr_copy_;
  bool stderr_copy_dropped_ = false;
  size_t peak_ = 0;

  UniqueFd vchan_;
  event::FdWatch vchan_watch_;
  ByteQueue rx_;
  ByteQueue tx_;
  bool vchan_read_eof_ = false;
  bool vchan_write_dead_ = false;
  bool rx_stalled_ = false;  // a complete message waits for room in its sink
  bool stop_rx_ = false;     // no more input is wanted from the peer

  // Caller: sinks {stdout, stderr}, sources {stdin}.
  // Service: sinks {child stdin}, sources {child stdout, child stderr}.
  std::array<Sink, 2> sinks_;
  std::array<Source, 2> sources_;

  // Caller.
  std::string prefix_data_;
  bool got_exit_ = false;
  int remote_code_ = 0;
  bool stdin_eof_sent_ = false;
  // Service.
  bool socket_service_ = false;
  bool exit_on_service_eof_ = false;
  bool exit_on_client_eof_ = false;
  bool stdout_eof_sent_ = false;
  bool stderr_eof_sent_ = false;
  bool exit_queued_ = false;
  int exit_sent_ = 0;
  // Child (service process, or the caller's local program).
  pid_t child_pid_ = -1;
  event::ChildWatch child_watch_;
  bool child_reaped_ = false;
  int child_status_ = 0;

  bool single_socket_ = false;  // source 0 reads the socket of sink 0
  // With switch_on_sigusr1: a dup of sink 0's socket, kept after that sink
  // closes (EOF passed on with shutdown(SHUT_WR)), so that a program that
  // asks for the switch after its input ended can still send through it.
  UniqueFd switch_socket_;
  event::SignalWatch sigusr1_;

  bool finished_ = false;
  std::optional<Result<int>> outcome_;
  event::Timer finish_timer_;
};

}  // namespace qrexec::stream::internal
