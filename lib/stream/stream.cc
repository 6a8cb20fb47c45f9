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
#include "stream/engine.h"

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

namespace internal {
namespace {

// Single-socket modes read the socket through the source and write it
// through a dup(), because one fd can carry only one FdWatch.
Result<UniqueFd> DupSocket(int fd) {
  UniqueFd copy(::fcntl(fd, F_DUPFD_CLOEXEC, 3));
  if (!copy.valid()) return ErrnoError("dup");
  return copy;
}

void SetInterest(event::FdWatch& watch, event::Interest interest) {
  if (!watch.active()) return;
  if (auto s = watch.SetInterest(interest); !s) LOG_ERROR("{}", s.error().ToString());
}

}  // namespace

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
  if (switch_on_sigusr1 && !single_socket_ && !sinks_[0].closed && sinks_[0].local.is_socket) {
    auto copy = DupSocket(sinks_[0].local.fd);
    if (!copy) return tl::unexpected(copy.error());
    switch_socket_ = std::move(*copy);
  }
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
  // The socket to read from: sink 0 while it is open, else the copy kept for
  // the switch (its write side is already shut down).
  int socket_fd = -1;
  if (!sink.closed && sink.local.is_socket) socket_fd = sink.local.fd;
  if (socket_fd < 0 && switch_socket_.valid()) socket_fd = switch_socket_.get();
  if (finished_ || socket_fd < 0) {
    return MakeError(ErrorKind::kInternal, "single-socket switch: no input socket");
  }
  if (sources_[0].eof) {
    return MakeError(ErrorKind::kInternal, "single-socket switch: output already ended");
  }
  auto copy = DupSocket(socket_fd);
  if (!copy) return tl::unexpected(copy.error());
  switch_socket_.reset();
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
      if (role_ == Role::kService && exit_on_client_eof_) EndServiceOutput();
      return true;
    }
  }
  return true;
}

void Engine::EndServiceOutput() {
  if (stdout_eof_sent_) return;
  StopSource(0);
  Queue(proto::MsgType::kDataStdout, {});
  stdout_eof_sent_ = true;
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

// --- bookkeeping ---

void Engine::Queue(proto::MsgType type, std::span<const std::byte> payload) {
  AppendMessage(tx_, type, payload);
  NoteBuffered();
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
  // The service's input is watched for a hang-up even while nothing waits
  // for it (ServiceInputGone).
  bool watch_hangup = role_ == Role::kService;
  for (Sink& sink : sinks_) {
    SetInterest(sink.watch, {false, !sink.closed && !sink.buf.empty(), watch_hangup});
  }
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
    // Pass the end on to the local side once what it still has to take is
    // written (§2.7): a LOCAL_PROGRAM then sees EOF on its stdin and can
    // exit, which the call waits for.
    for (size_t i = 0; i < sinks_.size(); ++i) {
      sinks_[i].eof_pending = true;
      if (sinks_[i].buf.empty()) CloseSink(i, /*discard=*/false);
    }
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
  switch_socket_.reset();
  stderr_copy_.reset();
}

}  // namespace internal

using internal::Engine;

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
