// Blocking conveniences on top of Stream: whole-call runners for per-call
// processes, the hello, and the spawn-failure report.
#include <fmt/core.h>

#include "base/log.h"
#include "stream/byte_queue.h"
#include "stream/decoder.h"
#include "stream/stream.h"

namespace qrexec::stream {

namespace {

// Runs one stream, started by `start` (Stream::StartCaller or StartService),
// on a loop of its own until it ends.
template <class Config, class Start>
Result<int> RunToEnd(Start start, Config config) {
  event::Loop loop;
  std::optional<Result<int>> outcome;
  auto stream = start(loop, std::move(config), [&](Result<int> r) {
    outcome = std::move(r);
    loop.Quit();
  });
  if (!stream) return tl::unexpected(stream.error());
  while (!outcome) {
    if (auto ran = loop.Run(); !ran) return tl::unexpected(ran.error());
  }
  stream->reset();
  return std::move(*outcome);
}

}  // namespace

Result<int> RunCaller(CallerConfig config) {
  return RunToEnd(&Stream::StartCaller, std::move(config));
}

Result<int> RunService(ServiceConfig config) {
  return RunToEnd(&Stream::StartService, std::move(config));
}

Result<uint32_t> Handshake(int vchan_fd, uint32_t own_version, const sys::Deadline& deadline) {
  internal::ByteQueue hello;
  std::byte body[proto::kPeerInfoSize];
  proto::StoreU32(body, own_version);
  internal::AppendMessage(hello, proto::MsgType::kHello, body);
  if (auto w = sys::WriteAll(vchan_fd, hello.data(), deadline); !w) {
    return tl::unexpected(w.error());
  }
  std::byte reply[proto::kHeaderSize + proto::kPeerInfoSize];
  auto header_bytes = std::span<std::byte>(reply).first<proto::kHeaderSize>();
  if (auto r = sys::ReadExact(vchan_fd, header_bytes, deadline); !r) {
    return tl::unexpected(r.error());
  }
  auto header = proto::Header::Decode(header_bytes);
  if (header.untrusted_type != static_cast<uint32_t>(proto::MsgType::kHello) ||
      header.untrusted_len != proto::kPeerInfoSize) {
    return MakeError(ErrorKind::kMalformed,
                     fmt::format("expected data-channel HELLO, got type {:#x} len {}",
                                 header.untrusted_type, header.untrusted_len));
  }
  auto body_bytes = std::span<std::byte>(reply).subspan(proto::kHeaderSize);
  if (auto r = sys::ReadExact(vchan_fd, body_bytes, deadline); !r) {
    return tl::unexpected(r.error());
  }
  return NegotiateVersion(own_version, proto::LoadU32(body_bytes.data()));
}

Status SendSpawnFailure(int vchan_fd, int exit_code, uint32_t own_version,
                        std::optional<uint32_t> negotiated_version, const sys::Deadline& deadline,
                        FailureStreams streams) {
  if (!negotiated_version) {
    auto version = Handshake(vchan_fd, own_version, deadline);
    if (!version) return tl::unexpected(version.error());
  }
  internal::ByteQueue out;
  if (streams == FailureStreams::kStderrFirst)
    internal::AppendMessage(out, proto::MsgType::kDataStderr, {});
  internal::AppendMessage(out, proto::MsgType::kDataStdout, {});
  if (streams == FailureStreams::kStdoutAndStderr)
    internal::AppendMessage(out, proto::MsgType::kDataStderr, {});
  std::byte code[4];
  proto::StoreU32(code, static_cast<uint32_t>(exit_code));
  internal::AppendMessage(out, proto::MsgType::kDataExitCode, code);
  return sys::WriteAll(vchan_fd, out.data(), deadline);
}

}  // namespace qrexec::stream
