// FrameReader and the blocking helpers, over real socketpairs.
#include "proto/framing.h"

#include <gtest/gtest.h>
#include <sys/socket.h>

#include <string>

#include "proto/handshake.h"

namespace qrexec::proto {
namespace {

using namespace std::string_literals;

std::span<const std::byte> B(const std::string& s) {
  return std::as_bytes(std::span<const char>(s.data(), s.size()));
}

std::string Frame(uint32_t type, const std::string& body) {
  std::string out(8, '\0');
  StoreU32(reinterpret_cast<std::byte*>(out.data()), type);
  StoreU32(reinterpret_cast<std::byte*>(out.data() + 4), static_cast<uint32_t>(body.size()));
  return out + body;
}

std::string BodyOf(const Message& m) {
  return std::string(reinterpret_cast<const char*>(m.body.data()), m.body.size());
}

TEST(FrameReader, DeliversMessagesPushedOneByteAtATime) {
  std::string stream = Frame(0x300, "\x04\0\0\0"s) + Frame(0x190, "") + Frame(0x191, "hello");
  FrameReader reader(100);
  std::vector<Message> got;
  for (char c : stream) {
    ASSERT_TRUE(reader.Push(B(std::string(1, c))));
    while (auto m = reader.Pop()) got.push_back(std::move(*m));
  }
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[0].header.untrusted_type, 0x300u);
  EXPECT_EQ(BodyOf(got[0]), "\x04\0\0\0"s);
  EXPECT_EQ(got[1].header.untrusted_type, 0x190u);
  EXPECT_EQ(got[1].header.untrusted_len, 0u);
  EXPECT_EQ(BodyOf(got[2]), "hello");
  EXPECT_TRUE(reader.Finish());
}

TEST(FrameReader, DeliversSeveralMessagesFromOnePushInOrder) {
  FrameReader reader(10);
  ASSERT_TRUE(reader.Push(B(Frame(1, "a") + Frame(2, "bb") + Frame(3, "ccc").substr(0, 10))));
  EXPECT_EQ(reader.Pop()->header.untrusted_type, 1u);
  EXPECT_EQ(reader.Pop()->header.untrusted_type, 2u);
  EXPECT_FALSE(reader.Pop().has_value());
  EXPECT_TRUE(reader.in_frame());
  EXPECT_FALSE(reader.Finish());
  ASSERT_TRUE(reader.Push(B("c"s)));
  EXPECT_EQ(BodyOf(*reader.Pop()), "ccc");
  EXPECT_TRUE(reader.Finish());
}

TEST(FrameReader, RejectsAnOversizedHeaderBeforeAnyBodyArrives) {
  FrameReader reader(4);
  EXPECT_TRUE(reader.Push(B(Frame(0x300, "1234"))));
  std::string header = Frame(0x300, "12345").substr(0, 8);
  auto st = reader.Push(B(header));
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().kind, ErrorKind::kMalformed);
  EXPECT_TRUE(reader.failed());
  EXPECT_FALSE(reader.Push(B("x"s)));
  // The message completed before the bad header is still delivered.
  EXPECT_TRUE(reader.Pop().has_value());
}

TEST(FrameReader, RejectsAHugeLengthWithoutAllocating) {
  FrameReader reader(65536);
  std::string header = "\x90\x01\0\0\xff\xff\xff\xff"s;
  EXPECT_FALSE(reader.Push(B(header)));
}

TEST(FrameReader, EndOfFileInsideAHeaderOrBodyIsAnError) {
  FrameReader reader(10);
  EXPECT_TRUE(reader.Finish());
  ASSERT_TRUE(reader.Push(B("\x01\0\0"s)));
  EXPECT_FALSE(reader.Finish());
  FrameReader body_reader(10);
  ASSERT_TRUE(body_reader.Push(B(Frame(1, "abc").substr(0, 9))));
  EXPECT_FALSE(body_reader.Finish());
}

TEST(FrameReader, TheLimitCanBeRaisedAfterNegotiation) {
  FrameReader reader(4);
  reader.set_max_body(8);
  EXPECT_TRUE(reader.Push(B(Frame(0x191, "12345678"))));
  EXPECT_EQ(reader.max_body(), 8u);
}

struct Pair {
  UniqueFd a, b;
};
Pair MakePair() {
  auto p = sys::SocketPair();
  EXPECT_TRUE(p.has_value());
  return {std::move(p->first), std::move(p->second)};
}

TEST(ReadMessage, ReadsOneMessageWrittenByWriteMessage) {
  auto [a, b] = MakePair();
  std::string body = "payload";
  ASSERT_TRUE(WriteMessage(a.get(), MsgType::kDataStdout, B(body)));
  ASSERT_TRUE(WriteMessage(a.get(), MsgType::kDataStdout, {}));
  auto m = ReadMessage(b.get(), 100);
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->header.untrusted_type, 0x191u);
  EXPECT_EQ(BodyOf(*m), "payload");
  auto empty = ReadMessage(b.get(), 100);
  ASSERT_TRUE(empty.has_value());
  EXPECT_EQ(empty->header.untrusted_len, 0u);
}

TEST(ReadMessage, EndOfFileAtABoundaryIsDisconnected) {
  auto [a, b] = MakePair();
  a.reset();
  auto m = ReadMessage(b.get(), 100);
  ASSERT_FALSE(m);
  EXPECT_EQ(m.error().kind, ErrorKind::kDisconnected);
}

TEST(ReadMessage, EndOfFileInsideAMessageIsMalformed) {
  for (size_t cut : {1u, 7u, 8u, 10u}) {
    auto [a, b] = MakePair();
    ASSERT_TRUE(sys::WriteAll(a.get(), B(Frame(0x191, "abcd").substr(0, cut))));
    a.reset();
    auto m = ReadMessage(b.get(), 100);
    ASSERT_FALSE(m);
    EXPECT_EQ(m.error().kind, ErrorKind::kMalformed) << "cut at " << cut;
  }
}

TEST(ReadMessage, AnOversizedLengthIsMalformed) {
  auto [a, b] = MakePair();
  ASSERT_TRUE(sys::WriteAll(a.get(), B(Frame(0x191, "abcde"))));
  auto m = ReadMessage(b.get(), 4);
  ASSERT_FALSE(m);
  EXPECT_EQ(m.error().kind, ErrorKind::kMalformed);
}

TEST(ReadMessage, GivesUpAtTheDeadline) {
  auto [a, b] = MakePair();
  auto m = ReadMessage(b.get(), 4, sys::Deadline::After(std::chrono::milliseconds(20)));
  ASSERT_FALSE(m);
  EXPECT_EQ(m.error().kind, ErrorKind::kTimedOut);
}

TEST(Hello, SendAndReceiveOverASocketPair) {
  auto [a, b] = MakePair();
  ASSERT_TRUE(SendHello(a.get(), 4));
  auto v = ReceiveHello(b.get());
  ASSERT_TRUE(v.has_value());
  EXPECT_EQ(*v, 4u);
}

TEST(Hello, ReceiveRejectsOtherMessagesAndBadLengths) {
  {
    auto [a, b] = MakePair();
    ASSERT_TRUE(sys::WriteAll(a.get(), B(Frame(0x200, "\x04\0\0\0"s))));
    EXPECT_FALSE(ReceiveHello(b.get()));
  }
  {
    auto [a, b] = MakePair();
    ASSERT_TRUE(sys::WriteAll(a.get(), B(Frame(0x300, "\x04\0\0"s))));
    EXPECT_FALSE(ReceiveHello(b.get()));
  }
  {
    auto [a, b] = MakePair();
    ASSERT_TRUE(sys::WriteAll(a.get(), B(Frame(0x300, "\x04\0\0\0\0"s))));
    EXPECT_FALSE(ReceiveHello(b.get()));
  }
}

}  // namespace
}  // namespace qrexec::proto
