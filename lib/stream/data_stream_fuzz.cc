// Fuzzes the receive side of a data stream. Byte 0: bit 0 selects the role
// (1 = service), bits 1-3 our own hello version (0-7), bit 7 the mode:
//  * clear: the pure InboundDecoder; the peer's bytes (from byte 2 on) arrive
//    in pieces of byte-1 bytes (0 = all at once) to exercise partial headers
//    and payloads. Every event must obey the role's direction rules.
//  * set: the whole engine (RunCaller/RunService) over a real socketpair,
//    local side on /dev/null; the peer's bytes are written and the peer end
//    shut down, so every run must terminate.
// Nothing may crash, leak or read out of bounds.
#include <fcntl.h>
#include <sys/socket.h>

#include <cstddef>
#include <cstdint>
#include <span>

#include "base/check.h"
#include "base/log.h"
#include "base/sys.h"
#include "stream/decoder.h"
#include "stream/stream.h"

namespace qs = qrexec::stream;
using qrexec::UniqueFd;

namespace {

void RunEngine(qs::Role role, uint32_t own_version, std::span<const std::byte> peer_bytes) {
  auto pair = qrexec::sys::SocketPair();
  QREXEC_CHECK(pair.has_value());
  // Unix stream sockets buffer a few hundred KiB: enough for -max_len.
  QREXEC_CHECK(qrexec::sys::WriteAll(pair->second.get(), peer_bytes).has_value());
  ::shutdown(pair->second.get(), SHUT_WR);
  UniqueFd null_out(::open("/dev/null", O_WRONLY | O_CLOEXEC));
  QREXEC_CHECK(null_out.valid());
  if (role == qs::Role::kCaller) {
    qs::CallerConfig config;
    config.vchan = std::move(pair->first);
    config.out = std::move(null_out);
    config.err_fd = -1;
    config.own_version = own_version;
    (void)qs::RunCaller(std::move(config));
  } else {
    qs::ServiceConfig config;
    config.vchan = std::move(pair->first);
    config.child_stdin = std::move(null_out);
    config.own_version = own_version;
    (void)qs::RunService(std::move(config));
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  // The engine logs peer errors; keep the fuzzer's output readable.
  static const int log_sink = [] {
    int fd = ::open("/dev/null", O_WRONLY | O_CLOEXEC);
    qrexec::log::SetLogFd(fd);
    return fd;
  }();
  (void)log_sink;
  qs::Role role = (data[0] & 1) != 0 ? qs::Role::kService : qs::Role::kCaller;
  uint32_t own_version = static_cast<uint32_t>((data[0] >> 1) & 7);  // 0..7
  size_t piece = data[1] == 0 ? SIZE_MAX : data[1];
  auto input = std::as_bytes(std::span<const uint8_t>(data + 2, size - 2));
  if ((data[0] & 0x80) != 0) {
    RunEngine(role, own_version, input);
    return 0;
  }

  qs::InboundDecoder decoder(role, own_version);
  // Simulates the engine's receive buffer: bytes arrive `piece` at a time.
  size_t available = 0;
  size_t start = 0;
  while (start < input.size()) {
    available = std::min(input.size(), available + piece);
    for (;;) {
      size_t consumed = 0;
      auto event = decoder.Next(input.subspan(start, available - start), &consumed);
      if (!event) return 0;  // fatal for the stream: fine
      if (!*event) break;
      QREXEC_CHECK(consumed > 0 && consumed <= available - start);
      const auto& e = **event;
      QREXEC_CHECK(e.data.size() <= decoder.max_chunk());
      if (e.kind == qs::InboundEvent::Kind::kData || e.kind == qs::InboundEvent::Kind::kEof) {
        QREXEC_CHECK((e.channel == qs::Channel::kStdin) == (role == qs::Role::kService));
      }
      if (e.kind == qs::InboundEvent::Kind::kExitCode) QREXEC_CHECK(role == qs::Role::kCaller);
      if (e.kind == qs::InboundEvent::Kind::kHello) {
        QREXEC_CHECK(e.version >= 2 && e.version <= own_version);
      }
      start += consumed;
    }
    if (available == input.size()) break;
  }
  return 0;
}
