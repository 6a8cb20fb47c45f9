#include "stream/stream.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include "base/check.h"
#include "base/escape_filter.h"
#include "base/log.h"
#include "stream/byte_queue.h"
#include "stream/decoder.h"

namespace qrexec::stream {

int WaitStatusToExitCode(int wait_status) {
  if (WIFEXITED(wait_status)) return WEXITSTATUS(wait_status);
  if (WIFSIGNALED(wait_status)) return 128 + WTERMSIG(wait_status);
  return kExitServiceProblem;
}

namespace {

void EmptySigpipeHandler(int) {}

}  // namespace

void InstallSigpipeGuard() {
  struct sigaction old {};
  if (::sigaction(SIGPIPE, nullptr, &old) != 0) return;
  if (old.sa_handler != SIG_DFL) return;  // SIG_IGN or a handler: EPIPE already
  struct sigaction sa {};
  sa.sa_handler = EmptySigpipeHandler;
  sa.sa_flags = SA_RESTART;
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGPIPE, &sa, nullptr);
}

namespace {

using internal::AppendMessage;
using internal::ByteQueue;

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
  void OnSink(size_t index);
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
      case Channel::kStdout: return role_ == Role::kCaller ? &sinks_[0] : nullptr;
      case Channel::kStderr: return role_ == Role::kCaller ? &sinks_[1] : nullptr;
      case Channel::kStdin: return role_ == Role::kService ? &sinks_[0] : nullptr;
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
  event::SignalWatch sigusr1_;

  bool finished_ = false;
  std::optional<Result<int>> outcome_;
  event::Timer finish_timer_;
};

Status Engine::InitCommon(UniqueFd vchan) {
  InstallSigpipeGuard();
  if (!vchan.valid()) return MakeError(ErrorKind::kInternal, "no data vchan");
  vchan_ = std::move(vchan);
  if (auto nb = sys::SetNonBlocking(vchan_.get(), true); !nb) return nb;
  auto timer = loop_.AddTimer([this] {
    auto done = std::move(done_);
    Result<int> outcome = std::move(*outcome_);
    if (done) done(std::move(outcome));  // may destroy *this: nothing after
  });
  if (!timer) return tl::unexpected(timer.error());
  finish_timer_ = std::move(*timer);
  auto watch = loop_.WatchFd(vchan_.get(), event::Interest::Read(),
                             [this](event::Ready ready) { OnVchan(ready); });
  if (!watch) return tl::unexpected(watch.error());
  vchan_watch_ = std::move(*watch);
  if (!decoder_.hello_done()) {
    uint32_t version = own_version_;
    std::byte body[proto::kPeerInfoSize];
    proto::StoreU32(body, version);
    Queue(proto::MsgType::kHello, body);
  }
  return Ok();
}

Status Engine::OpenSink(size_t index, UniqueFd owned, int raw, bool filter) {
  Sink& sink = sinks_[index];
  sink.filter = filter;
  if (raw < 0) return Ok();  // stays closed: data is dropped
  sink.local.owned = std::move(owned);
  if (auto adopted = sink.local.Adopt(raw); !adopted) return adopted;
  auto watch = loop_.WatchFd(raw, event::Interest::None(), [this, index](event::Ready) {
    OnSink(index);
  });
  if (!watch) return tl::unexpected(watch.error());
  sink.watch = std::move(*watch);
  sink.closed = false;
  return Ok();
}

Status Engine::OpenSource(size_t index, UniqueFd owned, proto::MsgType type) {
  Source& source = sources_[index];
  source.type = type;
  if (!owned.valid()) return Ok();  // stays at EOF; OnHello sends the EOF
  int raw = owned.get();
  source.local.owned = std::move(owned);
  if (auto adopted = source.local.Adopt(raw); !adopted) return adopted;
  auto watch = loop_.WatchFd(raw, event::Interest::None(), [this, index](event::Ready) {
    OnSource(index);
  });
  if (!watch) return tl::unexpected(watch.error());
  source.watch = std::move(*watch);
  source.eof = false;
  return Ok();
}

// Single-socket modes read the socket through the source and write it
// through a dup(), because one fd can carry only one FdWatch.
Result<UniqueFd> DupSocket(int fd) {
  UniqueFd copy(::fcntl(fd, F_DUPFD_CLOEXEC, 3));
  if (!copy.valid()) return ErrnoError("dup");
  return copy;
}

Status Engine::InitCaller(CallerConfig& config) {
  prefix_data_ = std::move(config.prefix_data);
  child_pid_ = config.local_program_pid;
  if (auto s = InitCommon(std::move(config.vchan)); !s) return s;
  single_socket_ = config.single_socket;
  if (config.single_socket) {
    QREXEC_CHECK(!config.out.valid());
    if (config.in.valid()) {
      auto copy = DupSocket(config.in.get());
      if (!copy) return tl::unexpected(copy.error());
      config.out = std::move(*copy);
    }
  }
  int out_raw = config.out.get();
  if (auto s = OpenSink(0, std::move(config.out), out_raw, config.filter_stdout); !s) return s;
  // stderr is borrowed; a private dup lets it be the same fd as `out`
  // (one fd can carry only one FdWatch) and is the only thing we close.
  sinks_[1].shutdown_on_close = false;
  UniqueFd err;
  if (config.err_fd >= 0) {
    err.reset(::fcntl(config.err_fd, F_DUPFD_CLOEXEC, 3));
    if (!err.valid()) return ErrnoError("dup(stderr)");
  }
  int err_raw = err.get();
  if (auto s = OpenSink(1, std::move(err), err_raw, config.filter_stderr); !s) return s;
  if (auto s = OpenSource(0, std::move(config.in), proto::MsgType::kDataStdin); !s) return s;
  return StartRunning(config.switch_on_sigusr1);
}

Status Engine::InitService(ServiceConfig& config) {
  socket_service_ = config.socket_service;
  exit_on_service_eof_ = config.exit_on_service_eof;
  exit_on_client_eof_ = config.exit_on_client_eof;
  child_pid_ = config.child_pid;
  open_stderr_copy_ = std::move(config.open_stderr_copy);
  if (auto s = InitCommon(std::move(config.vchan)); !s) return s;
  single_socket_ = socket_service_;
  if (socket_service_) {
    QREXEC_CHECK(!config.child_stdout.valid());
    if (config.child_stdin.valid()) {
      auto copy = DupSocket(config.child_stdin.get());
      if (!copy) return tl::unexpected(copy.error());
      config.child_stdout = std::move(*copy);
    }
  }
  int in_raw = config.child_stdin.get();
  if (auto s = OpenSink(0, std::move(config.child_stdin), in_raw, false); !s) return s;
  if (auto s = OpenSource(0, std::move(config.child_stdout), proto::MsgType::kDataStdout); !s) {
    return s;
  }
  if (auto s = OpenSource(1, std::move(config.child_stderr), proto::MsgType::kDataStderr); !s) {
    return s;
  }
  if (sources_[1].eof) {
    // No separate stderr: announce its end at once (§2.7, §7.6).
    Queue(proto::MsgType::kDataStderr, {});
    stderr_eof_sent_ = true;
  }
  return StartRunning(config.switch_on_sigusr1);
}

Status Engine::StartRunning(bool switch_on_sigusr1) {
  if (switch_on_sigusr1) {
    auto watch = loop_.WatchSignal(SIGUSR1, [this](int) {
      if (auto s = SwitchToSingleSocket(); !s) LOG_WARNING("SIGUSR1: {}", s.error().message);
    });
    if (!watch) return tl::unexpected(watch.error());
    sigusr1_ = std::move(*watch);
  }
  if (child_pid_ > 0) {
    auto watch = loop_.WatchChild(child_pid_, [this](int status) { OnChildExit(status); });
    if (!watch) return tl::unexpected(watch.error());
    child_watch_ = std::move(*watch);
  }
  if (decoder_.hello_done()) OnHello();
  FlushVchan();
  Update();
  return Ok();
}

Status Engine::SwitchToSingleSocket() {
  if (single_socket_) return Ok();
  Sink& sink = sinks_[0];
  if (finished_ || sink.closed || !sink.local.is_socket) {
    return MakeError(ErrorKind::kInternal, "single-socket switch: no open input socket");
  }
  if (sources_[0].eof) {
    return MakeError(ErrorKind::kInternal, "single-socket switch: output already ended");
  }
  auto copy = DupSocket(sink.local.fd);
  if (!copy) return tl::unexpected(copy.error());
  LOG_DEBUG("switching to single-socket mode");
  StopSource(0);  // the old output is dropped without an EOF
  if (auto s = OpenSource(0, std::move(*copy), sources_[0].type); !s) {
    Fail(s.error());
    return s;
  }
  single_socket_ = true;
  Update();
  return Ok();
}

void Engine::OnChildExit(int status) {
  child_reaped_ = true;
  child_status_ = status;
  LOG_DEBUG("child {} exited with status {:#x}", child_pid_, status);
  // The service process is gone: nobody will read its stdin any more.
  if (role_ == Role::kService) CloseSink(0, /*discard=*/true);
  Update();
}

void Engine::OnHello() {
  LOG_DEBUG("data channel: protocol version {}", decoder_.version());
  if (role_ == Role::kCaller) {
    auto prefix = std::as_bytes(std::span<const char>(prefix_data_));
    size_t chunk = decoder_.max_chunk();
    for (size_t off = 0; off < prefix.size(); off += chunk) {
      Queue(proto::MsgType::kDataStdin, prefix.subspan(off, std::min(chunk, prefix.size() - off)));
    }
    prefix_data_.clear();
    if (sources_[0].eof && !stdin_eof_sent_) {
      Queue(proto::MsgType::kDataStdin, {});
      stdin_eof_sent_ = true;
    }
  } else if (sources_[0].eof && !stdout_eof_sent_) {
    Queue(proto::MsgType::kDataStdout, {});
    stdout_eof_sent_ = true;
  }
}

// --- vchan ---

void Engine::OnVchan(event::Ready ready) {
  if (ready.readable || ready.hangup || ready.error) ReadVchan();
  if (finished_) return;
  ProcessRx();
  if (finished_) return;
  FlushVchan();
  for (size_t i = 0; i < sinks_.size(); ++i) WriteSink(i);
  // Draining the sinks may have made room for a message that stalled above;
  // with a full rx_ and empty sinks nothing else would wake us up again.
  while (rx_stalled_ && !finished_ && SinksHaveRoom()) {
    ProcessRx();
    if (finished_) return;
    for (size_t i = 0; i < sinks_.size(); ++i) WriteSink(i);
  }
  if (finished_) return;
  FlushVchan();
  Update();
}

bool Engine::SinksHaveRoom() const {
  for (const Sink& sink : sinks_) {
    if (!sink.closed && sink.buf.size() >= limit_) return false;
  }
  return true;
}

void Engine::ReadVchan() {
  if (vchan_read_eof_ || stop_rx_ || rx_.size() >= kRxCap) return;
  size_t room = kRxCap - rx_.size();
  auto space = rx_.Reserve(room);
  ssize_t n;
  do {
    n = ::recv(vchan_.get(), space.data(), space.size(), MSG_DONTWAIT);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    int saved = errno;
    rx_.Commit(room, 0);
    if (saved == EAGAIN || saved == EWOULDBLOCK) return;
    LOG_DEBUG("data vchan read failed: {}", std::strerror(saved));
    vchan_read_eof_ = true;
    return;
  }
  rx_.Commit(room, static_cast<size_t>(n));
  if (n == 0) vchan_read_eof_ = true;
  NoteBuffered();
}

void Engine::FlushVchan() {
  while (!tx_.empty() && !vchan_write_dead_) {
    auto data = tx_.data();
    ssize_t n = ::send(vchan_.get(), data.data(), data.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      LOG_DEBUG("data vchan write failed: {}", std::strerror(errno));
      vchan_write_dead_ = true;
      tx_.Release();
      return;
    }
    tx_.Consume(static_cast<size_t>(n));
  }
}

void Engine::ProcessRx() {
  rx_stalled_ = false;
  while (!stop_rx_ && !finished_) {
    size_t consumed = 0;
    auto event = decoder_.Next(rx_.data(), &consumed);
    if (!event) return Fail(event.error());
    if (!*event) return;
    if (!HandleEvent(**event)) {
      rx_stalled_ = true;
      return;
    }
    if (stop_rx_) break;  // rx_ was released
    rx_.Consume(consumed);
  }
  if (stop_rx_) rx_.Release();
}

// Returns false when the event's sink is full (retry later).
bool Engine::HandleEvent(const InboundEvent& event) {
  using Kind = InboundEvent::Kind;
  if (event.wrong_direction) LogWrongDirection();
  switch (event.kind) {
    case Kind::kHello:
      OnHello();
      return true;
    case Kind::kIgnored:
      return true;
    case Kind::kExitCode:
      OnExitCode(event.exit_code);
      return true;
    case Kind::kData: {
      Sink* sink = SinkFor(event.channel);
      if (sink == nullptr || sink->closed || sink->eof_pending) return true;  // dropped
      if (sink->buf.size() >= limit_) return false;
      std::span<const std::byte> data = event.data;
      // Fast path: nothing queued before it, so write straight from the
      // receive buffer and keep only what the fd did not take. Any error
      // (EAGAIN or worse) leaves the rest to WriteSink, which handles it.
      if (sink->buf.empty() && !sink->filter) data = data.subspan(TryWriteDirect(*sink, data));
      if (data.empty()) return true;
      auto space = sink->buf.Reserve(data.size());
      std::copy(data.begin(), data.end(), space.begin());
      if (sink->filter) {
        FilterEscapes(std::span<char>(reinterpret_cast<char*>(space.data()), space.size()));
      }
      sink->buf.Commit(space.size(), space.size());
      NoteBuffered();
      return true;
    }
    case Kind::kEof: {
      Sink* sink = SinkFor(event.channel);
      if (sink != nullptr) sink->eof_pending = true;
      if (role_ == Role::kService && exit_on_client_eof_ && !stdout_eof_sent_) {
        StopSource(0);
        Queue(proto::MsgType::kDataStdout, {});
        stdout_eof_sent_ = true;
      }
      return true;
    }
  }
  return true;
}

void Engine::OnExitCode(int code) {
  got_exit_ = true;
  remote_code_ = code;
  LOG_DEBUG("remote exit code {}", code);
  stop_rx_ = true;
  StopSource(0);
  if (!stdin_eof_sent_) {
    Queue(proto::MsgType::kDataStdin, {});
    stdin_eof_sent_ = true;
  }
}

void Engine::LogWrongDirection() {
  if (logged_wrong_direction_) return;
  logged_wrong_direction_ = true;
  LOG_ERROR("data channel: peer sent a message for the wrong direction");
}

// --- local sources ---

void Engine::OnSource(size_t index) {
  Source& source = sources_[index];
  if (source.eof || !decoder_.hello_done() || tx_.size() >= limit_ || vchan_write_dead_) {
    return Update();
  }
  size_t chunk = decoder_.max_chunk();
  auto space = tx_.Reserve(proto::kHeaderSize + chunk);
  ssize_t n;
  do {
    n = ::read(source.local.fd, space.data() + proto::kHeaderSize, chunk);
  } while (n < 0 && errno == EINTR);
  if (n > 0) {
    if (role_ == Role::kService && index == 1)
      CopyStderr(space.subspan(proto::kHeaderSize, static_cast<size_t>(n)));
    proto::EncodeHeader(space.first<proto::kHeaderSize>(), source.type, static_cast<uint32_t>(n));
    tx_.Commit(proto::kHeaderSize + chunk, proto::kHeaderSize + static_cast<size_t>(n));
    NoteBuffered();
  } else {
    tx_.Commit(proto::kHeaderSize + chunk, 0);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return Update();
    if (n < 0) LOG_DEBUG("local read failed, treating as EOF: {}", std::strerror(errno));
    SourceEof(index);
  }
  FlushVchan();
  Update();
}

void Engine::CopyStderr(std::span<const std::byte> data) {
  if (open_stderr_copy_) {
    stderr_copy_ = std::exchange(open_stderr_copy_, nullptr)();
    if (stderr_copy_.valid() && !sys::SetNonBlocking(stderr_copy_.get(), true)) stderr_copy_.reset();
  }
  if (!stderr_copy_.valid()) return;
  ssize_t n;
  do {
    n = ::write(stderr_copy_.get(), data.data(), data.size());
  } while (n < 0 && errno == EINTR);
  if (n < 0 && errno != EAGAIN) {
    stderr_copy_.reset();  // the logger is gone (EPIPE): no more copies
    return;
  }
  if (static_cast<size_t>(std::max<ssize_t>(n, 0)) < data.size() && !stderr_copy_dropped_) {
    stderr_copy_dropped_ = true;
    LOG_WARNING("the syslog copy of the service's stderr fell behind; dropping what does not fit");
  }
}

void Engine::SourceEof(size_t index) {
  StopSource(index);
  Queue(sources_[index].type, {});
  if (role_ == Role::kCaller) {
    stdin_eof_sent_ = true;
  } else if (index == 0) {
    stdout_eof_sent_ = true;
    if (exit_on_service_eof_) CloseSink(0, /*discard=*/true);
  } else {
    stderr_eof_sent_ = true;
  }
}

void Engine::StopSource(size_t index) {
  Source& source = sources_[index];
  source.eof = true;
  source.watch.Reset();
  source.local.Close();
}

// --- local sinks ---

void Engine::OnSink(size_t index) {
  WriteSink(index);
  // Room in a sink may unblock a stalled message.
  if (rx_stalled_) ProcessRx();
  if (finished_) return;
  FlushVchan();
  Update();
}

size_t Engine::TryWriteDirect(const Sink& sink, std::span<const std::byte> data) {
  ssize_t n;
  do {
    n = sink.local.is_socket ? ::send(sink.local.fd, data.data(), data.size(), MSG_DONTWAIT | MSG_NOSIGNAL)
                             : ::write(sink.local.fd, data.data(), data.size());
  } while (n < 0 && errno == EINTR);
  return n > 0 ? static_cast<size_t>(n) : 0;
}

void Engine::WriteSink(size_t index) {
  Sink& sink = sinks_[index];
  if (sink.closed) return;
  while (!sink.buf.empty()) {
    auto data = sink.buf.data();
    ssize_t n = sink.local.is_socket
                    ? ::send(sink.local.fd, data.data(), data.size(), MSG_DONTWAIT | MSG_NOSIGNAL)
                    : ::write(sink.local.fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      LOG_DEBUG("local write failed, dropping further output: {}", std::strerror(errno));
      return CloseSink(index, /*discard=*/true);
    }
    sink.buf.Consume(static_cast<size_t>(n));
  }
  if (sink.eof_pending) CloseSink(index, /*discard=*/false);
}

void Engine::CloseSink(size_t index, bool discard) {
  Sink& sink = sinks_[index];
  if (discard) sink.buf.Release();
  if (sink.closed) return;
  QREXEC_CHECK(sink.buf.empty());
  sink.closed = true;
  sink.watch.Reset();
  if (sink.local.is_socket && sink.shutdown_on_close) ::shutdown(sink.local.fd, SHUT_WR);
  sink.local.Close();
  sink.buf.Release();
}

// --- bookkeeping ---

void Engine::Queue(proto::MsgType type, std::span<const std::byte> payload) {
  AppendMessage(tx_, type, payload);
  NoteBuffered();
}

void SetInterest(event::FdWatch& watch, event::Interest interest) {
  if (!watch.active()) return;
  if (auto s = watch.SetInterest(interest); !s) LOG_ERROR("{}", s.error().ToString());
}

void Engine::Update() {
  if (finished_) return;
  if (role_ == Role::kService) {
    CheckServiceDone();
  } else {
    CheckCallerDone();
  }
  if (finished_) return;
  SetInterest(vchan_watch_,
              {!vchan_read_eof_ && !stop_rx_ && rx_.size() < kRxCap,
               !tx_.empty() && !vchan_write_dead_});
  bool can_send = decoder_.hello_done() && tx_.size() < limit_ && !vchan_write_dead_;
  for (Source& source : sources_) SetInterest(source.watch, {can_send && !source.eof, false});
  for (Sink& sink : sinks_) SetInterest(sink.watch, {false, !sink.closed && !sink.buf.empty()});
}

void Engine::CheckServiceDone() {
  if (!exit_queued_) {
    if (vchan_read_eof_ || vchan_write_dead_) {
      return Fail(Error{ErrorKind::kDisconnected, "data vchan closed before the exit code", 0});
    }
    bool child_done = child_pid_ <= 0 || child_reaped_;
    if (!decoder_.hello_done() || !sinks_[0].closed || !stdout_eof_sent_ || !stderr_eof_sent_ ||
        !child_done) {
      return;
    }
    exit_sent_ = socket_service_ || child_pid_ <= 0 ? 0 : WaitStatusToExitCode(child_status_);
    std::byte body[4];
    proto::StoreU32(body, static_cast<uint32_t>(exit_sent_));
    Queue(proto::MsgType::kDataExitCode, body);
    exit_queued_ = true;
    stop_rx_ = true;
    rx_.Release();
    FlushVchan();
  }
  if (tx_.empty()) return Finish(exit_sent_);
  if (vchan_write_dead_) {
    return Fail(Error{ErrorKind::kDisconnected, "data vchan closed before the exit code", 0});
  }
}

void Engine::CheckCallerDone() {
  if (!got_exit_ && vchan_read_eof_ && !rx_stalled_) {
    LOG_ERROR("vchan connection closed early");
    got_exit_ = true;
    remote_code_ = kExitVchanClosedEarly;
    stop_rx_ = true;
    rx_.Release();
    StopSource(0);
    tx_.Release();
  }
  if (!got_exit_) return;
  bool vchan_done = tx_.empty() || vchan_write_dead_ || vchan_read_eof_;
  bool local_done = child_pid_ <= 0 || child_reaped_;
  for (const Sink& sink : sinks_) {
    if (!sink.closed && !sink.buf.empty()) return;
  }
  if (!vchan_done || !local_done) return;
  int code = remote_code_;
  if (child_pid_ > 0) code = CombineWithLocalProgram(code, WaitStatusToExitCode(child_status_));
  Finish(code);
}

void Engine::Fail(Error error) {
  LOG_DEBUG("data stream failed: {}", error.ToString());
  Finish(tl::unexpected(std::move(error)));
}

void Engine::Finish(Result<int> outcome) {
  if (finished_) return;
  finished_ = true;
  CloseAll();
  outcome_ = std::move(outcome);
  if (auto armed = finish_timer_.Arm(std::chrono::nanoseconds::zero()); !armed) {
    LOG_ERROR("cannot arm finish timer: {}", armed.error().ToString());
  }
}

void Engine::CloseAll() {
  vchan_watch_.Reset();
  vchan_.reset();
  for (size_t i = 0; i < sources_.size(); ++i) StopSource(i);
  for (Sink& sink : sinks_) {
    sink.watch.Reset();
    if (!sink.closed && sink.local.is_socket && sink.shutdown_on_close) {
      ::shutdown(sink.local.fd, SHUT_WR);
    }
    sink.local.Close();
    sink.closed = true;
    sink.buf.Release();
  }
  rx_.Release();
  tx_.Release();
  child_watch_.Reset();
  sigusr1_.Reset();
  stderr_copy_.reset();
}

}  // namespace

Result<std::unique_ptr<Stream>> Stream::StartCaller(event::Loop& loop, CallerConfig config,
                                                    DoneCallback done) {
  auto engine = std::make_unique<Engine>(loop, Role::kCaller, config.own_version,
                                         config.negotiated_version, config.buffer_limit,
                                         std::move(done));
  if (auto s = engine->InitCaller(config); !s) return tl::unexpected(s.error());
  return std::unique_ptr<Stream>(std::move(engine));
}

Result<std::unique_ptr<Stream>> Stream::StartService(event::Loop& loop, ServiceConfig config,
                                                     DoneCallback done) {
  auto engine = std::make_unique<Engine>(loop, Role::kService, config.own_version,
                                         config.negotiated_version, config.buffer_limit,
                                         std::move(done));
  if (auto s = engine->InitService(config); !s) return tl::unexpected(s.error());
  return std::unique_ptr<Stream>(std::move(engine));
}

}  // namespace qrexec::stream
