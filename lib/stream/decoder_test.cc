#include "stream/decoder.h"

#include <cstring>
#include <list>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "stream/byte_queue.h"

namespace qrexec::stream {
namespace {

using Kind = InboundEvent::Kind;

std::vector<std::byte> Msg(uint32_t type, std::string_view payload) {
  std::vector<std::byte> out(proto::kHeaderSize + payload.size());
  proto::StoreU32(out.data(), type);
  proto::StoreU32(out.data() + 4, static_cast<uint32_t>(payload.size()));
  std::memcpy(out.data() + proto::kHeaderSize, payload.data(), payload.size());
  return out;
}

std::vector<std::byte> Hello(uint32_t version) {
  std::string body(4, '\0');
  proto::StoreU32(reinterpret_cast<std::byte*>(body.data()), version);
  return Msg(0x300, body);
}

std::string Str(std::span<const std::byte> bytes) {
  return std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size());
}

// Decodes one event from `input`, which must be complete. The event's data
// points into a copy kept alive for the whole test program.
Result<InboundEvent> One(InboundDecoder& decoder, const std::vector<std::byte>& input) {
  static std::list<std::vector<std::byte>> keep_alive;
  const auto& bytes = keep_alive.emplace_back(input);
  size_t consumed = 0;
  auto event = decoder.Next(bytes, &consumed);
  if (!event) return tl::unexpected(event.error());
  EXPECT_TRUE(event->has_value());
  EXPECT_EQ(consumed, bytes.size());
  return **event;
}

TEST(Decoder, MaxChunkIs4096ForV2And65536Later) {
  EXPECT_EQ(MaxChunkForVersion(2), 4096u);
  EXPECT_EQ(MaxChunkForVersion(3), 65536u);
  EXPECT_EQ(MaxChunkForVersion(4), 65536u);
}

TEST(Decoder, HelloNegotiatesTheMinimumAndRefusesBelowTwo) {
  InboundDecoder a(Role::kCaller, 4);
  auto e = One(a, Hello(3));
  ASSERT_TRUE(e);
  EXPECT_EQ(e->kind, Kind::kHello);
  EXPECT_EQ(a.version(), 3u);
  InboundDecoder b(Role::kCaller, 2);
  ASSERT_TRUE(One(b, Hello(9)));
  EXPECT_EQ(b.version(), 2u);
  InboundDecoder c(Role::kService, 4);
  auto bad = One(c, Hello(1));
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().kind, ErrorKind::kMalformed);
}

TEST(Decoder, FirstMessageMustBeAFourByteHello) {
  InboundDecoder a(Role::kCaller, 4);
  EXPECT_FALSE(One(a, Msg(0x191, "x")));
  InboundDecoder b(Role::kCaller, 4);
  EXPECT_FALSE(One(b, Msg(0x300, "12345")));
}

TEST(Decoder, IncompleteInputNeedsMoreBytes) {
  InboundDecoder d(Role::kCaller, 4, 4);
  auto msg = Msg(0x191, "hello");
  for (size_t n = 0; n < msg.size(); ++n) {
    size_t consumed = 99;
    auto e = d.Next(std::span(msg).first(n), &consumed);
    ASSERT_TRUE(e);
    EXPECT_FALSE(e->has_value());
    EXPECT_EQ(consumed, 0u);
  }
}

TEST(Decoder, LengthAboveMaxChunkIsFatalBeforeThePayloadArrives) {
  std::vector<std::byte> header(8);
  proto::StoreU32(header.data(), 0x191);
  proto::StoreU32(header.data() + 4, 4097);
  InboundDecoder v2(Role::kCaller, 2, 2);
  size_t consumed = 0;
  auto e = v2.Next(header, &consumed);
  ASSERT_FALSE(e);
  EXPECT_EQ(e.error().kind, ErrorKind::kMalformed);
  // 4097 is fine for v3, 65537 is not.
  InboundDecoder v3(Role::kCaller, 4, 3);
  auto ok = v3.Next(header, &consumed);
  ASSERT_TRUE(ok);
  EXPECT_FALSE(ok->has_value());
  proto::StoreU32(header.data() + 4, 65537);
  EXPECT_FALSE(v3.Next(header, &consumed));
  // Exactly the limit is accepted.
  InboundDecoder exact(Role::kCaller, 2, 2);
  auto e4096 = One(exact, Msg(0x191, std::string(4096, 'a')));
  ASSERT_TRUE(e4096);
  EXPECT_EQ(e4096->data.size(), 4096u);
}

TEST(Decoder, CallerSeesStdoutStderrEofAndExitCode) {
  InboundDecoder d(Role::kCaller, 4, 4);
  auto out = One(d, Msg(0x191, "abc"));
  ASSERT_TRUE(out);
  EXPECT_EQ(out->kind, Kind::kData);
  EXPECT_EQ(out->channel, Channel::kStdout);
  EXPECT_EQ(Str(out->data), "abc");
  auto err = One(d, Msg(0x192, ""));
  ASSERT_TRUE(err);
  EXPECT_EQ(err->kind, Kind::kData) << "empty STDERR is not an EOF";
  EXPECT_EQ(err->channel, Channel::kStderr);
  auto eof = One(d, Msg(0x191, ""));
  ASSERT_TRUE(eof);
  EXPECT_EQ(eof->kind, Kind::kEof);
  std::string code(4, '\0');
  proto::StoreU32(reinterpret_cast<std::byte*>(code.data()), static_cast<uint32_t>(-5));
  auto exit = One(d, Msg(0x193, code + "trailing"));
  ASSERT_TRUE(exit);
  EXPECT_EQ(exit->kind, Kind::kExitCode);
  EXPECT_EQ(exit->exit_code, -5);
}

TEST(Decoder, ExitCodeShorterThanFourBytesMeans255) {
  for (std::string body : {"", "\x01", "\x01\x02\x03"}) {
    InboundDecoder d(Role::kCaller, 4, 4);
    auto e = One(d, Msg(0x193, body));
    ASSERT_TRUE(e);
    EXPECT_EQ(e->exit_code, 255);
  }
}

TEST(Decoder, CallerTreatsStdinAsStdoutDataWithAWarning) {
  InboundDecoder d(Role::kCaller, 4, 4);
  auto e = One(d, Msg(0x190, "x"));
  ASSERT_TRUE(e);
  EXPECT_EQ(e->kind, Kind::kData);
  EXPECT_EQ(e->channel, Channel::kStdout);
  EXPECT_TRUE(e->wrong_direction);
}

TEST(Decoder, ServiceRulesForEachType) {
  InboundDecoder d(Role::kService, 4, 4);
  auto in = One(d, Msg(0x190, "in"));
  ASSERT_TRUE(in);
  EXPECT_EQ(in->channel, Channel::kStdin);
  EXPECT_FALSE(in->wrong_direction);
  auto wrong = One(d, Msg(0x191, "as stdin"));
  ASSERT_TRUE(wrong);
  EXPECT_EQ(wrong->kind, Kind::kData);
  EXPECT_EQ(wrong->channel, Channel::kStdin);
  EXPECT_TRUE(wrong->wrong_direction);
  auto err = One(d, Msg(0x192, "e"));
  ASSERT_TRUE(err);
  EXPECT_EQ(err->kind, Kind::kIgnored);
  auto exit = One(d, Msg(0x193, "1234"));
  ASSERT_TRUE(exit);
  EXPECT_EQ(exit->kind, Kind::kIgnored);
  auto eof = One(d, Msg(0x190, ""));
  ASSERT_TRUE(eof);
  EXPECT_EQ(eof->kind, Kind::kEof);
}

TEST(Decoder, UnknownTypesAreFatalForBothRoles) {
  for (Role role : {Role::kCaller, Role::kService}) {
    for (uint32_t type : {0x18fu, 0x194u, 0x200u, 0x300u, 0u, 0xffffffffu}) {
      InboundDecoder d(role, 4, 4);
      auto e = One(d, Msg(type, ""));
      ASSERT_FALSE(e) << type;
      EXPECT_EQ(e.error().kind, ErrorKind::kMalformed);
    }
  }
}

TEST(ByteQueue, ReserveCommitConsumeAndCompact) {
  internal::ByteQueue q;
  auto space = q.Reserve(100000);
  std::memset(space.data(), 'a', space.size());
  q.Commit(100000, 90000);
  EXPECT_EQ(q.size(), 90000u);
  q.Consume(80000);
  EXPECT_EQ(q.size(), 10000u);
  q.Append(std::as_bytes(std::span<const char>("bc", 2)));
  EXPECT_EQ(q.size(), 10002u);
  EXPECT_EQ(static_cast<char>(q.data()[10001]), 'c');
  q.Consume(10002);
  EXPECT_TRUE(q.empty());
}

}  // namespace
}  // namespace qrexec::stream
