#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <string>

#include <gtest/gtest.h>

#include "base/escape_filter.h"
#include "base/malloc_tuning.h"
#include "base/names.h"
#include "base/sys.h"
#include "base/unique_fd.h"

namespace qrexec {
namespace {

TEST(UniqueFd, ClosesOnDestructionAndMovesOwnership) {
  auto pair = sys::SocketPair();
  ASSERT_TRUE(pair);
  int raw = pair->first.get();
  UniqueFd moved = std::move(pair->first);
  EXPECT_FALSE(pair->first.valid());
  EXPECT_EQ(moved.get(), raw);
  moved.reset();
  char byte = 'x';
  // The peer is closed, so writing to the other end fails with EPIPE.
  EXPECT_LT(::send(pair->second.get(), &byte, 1, MSG_NOSIGNAL), 0);
}

TEST(Sys, ReadExactReportsDisconnectOnShortStream) {
  auto pair = sys::SocketPair();
  ASSERT_TRUE(pair);
  ASSERT_TRUE(sys::WriteAll(pair->first.get(), std::string_view("abc")));
  pair->first.reset();
  std::byte buf[4];
  auto status = sys::ReadExact(pair->second.get(), buf);
  ASSERT_FALSE(status);
  EXPECT_EQ(status.error().kind, ErrorKind::kDisconnected);
}

TEST(Sys, ReadToEofEnforcesItsLimit) {
  auto pair = sys::SocketPair();
  ASSERT_TRUE(pair);
  ASSERT_TRUE(sys::WriteAll(pair->first.get(), std::string(100, 'a')));
  pair->first.reset();
  auto text = sys::ReadToEof(pair->second.get(), 99);
  ASSERT_FALSE(text);
  EXPECT_EQ(text.error().kind, ErrorKind::kOverloaded);
}

TEST(Sys, PassesOneDescriptorAndClosesExtras) {
  auto channel = sys::SocketPair();
  auto payload = sys::Pipe();
  ASSERT_TRUE(channel && payload);
  std::byte tag{42};
  ASSERT_TRUE(sys::SendWithFd(channel->first.get(), std::span(&tag, 1), payload->second.get()));
  std::byte got{};
  auto received = sys::RecvWithFd(channel->second.get(), std::span(&got, 1));
  ASSERT_TRUE(received);
  EXPECT_EQ(received->first, 1u);
  EXPECT_EQ(got, std::byte{42});
  ASSERT_TRUE(received->second.valid());
  ASSERT_TRUE(sys::WriteAll(received->second.get(), std::string_view("hi")));
  std::byte buf[2];
  ASSERT_TRUE(sys::ReadExact(payload->first.get(), buf));
}

TEST(Sys, DeadlineTimesOutAWait) {
  auto pair = sys::SocketPair();
  ASSERT_TRUE(pair);
  auto status = sys::WaitReadable(pair->first.get(), sys::Deadline::After(std::chrono::milliseconds(20)));
  ASSERT_FALSE(status);
  EXPECT_EQ(status.error().kind, ErrorKind::kTimedOut);
}

TEST(Sys, UnixConnectTellsMissingStaleAndLiveSocketsApart) {
  char dir_template[] = "/tmp/qrexec-base-test.XXXXXX";
  ASSERT_NE(::mkdtemp(dir_template), nullptr);
  std::string path = std::string(dir_template) + "/sock";
  for (bool nonblocking : {false, true}) {
    auto missing = sys::UnixConnect(path, nonblocking);
    ASSERT_FALSE(missing);
    EXPECT_EQ(missing.error().kind, ErrorKind::kNotFound);
    {
      auto listener = sys::UnixListen(path);
      ASSERT_TRUE(listener);
      auto live = sys::UnixConnect(path, nonblocking);
      ASSERT_TRUE(live) << live.error().ToString();
    }  // the listener closes; its socket file stays behind: a stale file
    auto stale = sys::UnixConnect(path, nonblocking);
    ASSERT_FALSE(stale);
    EXPECT_EQ(stale.error().kind, ErrorKind::kDisconnected);
    ::unlink(path.c_str());
  }
  ::rmdir(dir_template);
}

TEST(MallocTuning, SwitchesTheCacheOffWhenNothingIsSet) {
  EXPECT_EQ(sys::TunablesWithoutMallocCache(std::nullopt), "glibc.malloc.tcache_count=0");
  EXPECT_EQ(sys::TunablesWithoutMallocCache(""), "glibc.malloc.tcache_count=0");
}

TEST(MallocTuning, KeepsOtherTunables) {
  EXPECT_EQ(sys::TunablesWithoutMallocCache("glibc.malloc.mxfast=0"),
            "glibc.malloc.mxfast=0:glibc.malloc.tcache_count=0");
}

TEST(MallocTuning, RespectsAnExplicitCacheSetting) {
  EXPECT_EQ(sys::TunablesWithoutMallocCache("glibc.malloc.tcache_count=7"), std::nullopt);
  EXPECT_EQ(sys::TunablesWithoutMallocCache("a.b=1:glibc.malloc.tcache_count=0"), std::nullopt);
}

TEST(MallocTuning, SavedTunablesRoundTrip) {
  EXPECT_EQ(sys::DecodeSavedTunables(sys::EncodeSavedTunables(std::nullopt)), std::nullopt);
  EXPECT_EQ(sys::DecodeSavedTunables(sys::EncodeSavedTunables("")), "");
  EXPECT_EQ(sys::DecodeSavedTunables(sys::EncodeSavedTunables("glibc.malloc.mxfast=0")),
            "glibc.malloc.mxfast=0");
  EXPECT_EQ(sys::DecodeSavedTunables("garbage"), std::nullopt);
}

TEST(Names, QubeNamesFollowQubesd) {
  EXPECT_TRUE(names::IsValidQubeName("work"));
  EXPECT_TRUE(names::IsValidQubeName("sys-net_2"));
  EXPECT_FALSE(names::IsValidQubeName(""));
  EXPECT_FALSE(names::IsValidQubeName("1abc"));
  EXPECT_FALSE(names::IsValidQubeName("none"));
  EXPECT_FALSE(names::IsValidQubeName("default"));
  EXPECT_FALSE(names::IsValidQubeName("Domain-0"));
  EXPECT_FALSE(names::IsValidQubeName("vm-dm"));
  EXPECT_FALSE(names::IsValidQubeName(std::string(32, 'a')));
  EXPECT_FALSE(names::IsValidQubeName("a b"));
}

TEST(Names, SanitizeReplacesInsteadOfRefusing) {
  EXPECT_EQ(names::Sanitize("@dispvm:web", "@:"), "@dispvm:web");
  EXPECT_EQ(names::Sanitize("a b/c\n", "@:"), "a_b_c_");
  EXPECT_EQ(names::Sanitize("foo.Bar+x", "+"), "foo.Bar+x");
  EXPECT_EQ(names::Sanitize("foo.Bar+x", ""), "foo.Bar_x");
}

TEST(Names, Dom0Aliases) {
  EXPECT_TRUE(names::RefersToDom0("dom0"));
  EXPECT_TRUE(names::RefersToDom0("@adminvm"));
  EXPECT_TRUE(names::RefersToDom0("uuid:00000000-0000-0000-0000-000000000000"));
  EXPECT_FALSE(names::RefersToDom0("work"));
}

TEST(EscapeFilter, KeepsPrintableAndLayoutBytes) {
  std::string text = "ok\t\n\r\b\a\x1b[31m\x7f\x80";
  FilterEscapes(text);
  EXPECT_EQ(text, "ok\t\n\r\b\a_[31m__");
  EXPECT_EQ(SanitizeForLog("a\nb"), "a_b");
}

}  // namespace
}  // namespace qrexec

namespace qrexec {
namespace {

TEST(Sys, ReadExactHonoursItsDeadlineOnABlockingFd) {
  auto pair = sys::SocketPair(/*nonblocking=*/false);
  ASSERT_TRUE(pair);
  std::byte buf[1];
  auto status = sys::ReadExact(pair->first.get(), buf, sys::Deadline::After(std::chrono::milliseconds(20)));
  ASSERT_FALSE(status);
  EXPECT_EQ(status.error().kind, ErrorKind::kTimedOut);
}

}  // namespace
}  // namespace qrexec
