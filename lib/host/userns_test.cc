#include "host/userns.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>

namespace qrexec::host {
namespace {

class IdBaseTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/userns_test.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    etc_ = tmpl;
    Write("passwd", "root:x:0:0::/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n");
    Write("group", "root:x:0:\n");
    Write("subuid", "alice:100000:65536\n");
  }
  void TearDown() override { std::filesystem::remove_all(etc_); }
  void Write(const std::string& name, const std::string& text) { std::ofstream(etc_ + "/" + name) << text; }
  std::string etc_;
};

TEST_F(IdBaseTest, TheDefaultBaseClearsUsualAccountsAndSubordinateRanges) {
  EXPECT_TRUE(CheckIdBase(kDefaultIdBase, etc_));
}

TEST_F(IdBaseTest, RefusesABaseOverlappingAnAccountASubordinateRangeOr2To32) {
  auto status = CheckIdBase(100000, etc_);  // alice's subuid range
  ASSERT_FALSE(status);
  EXPECT_NE(status.error().message.find("subuid: alice"), std::string::npos) << status.error().message;
  Write("passwd", "svc:x:1879113729:1::/:/bin/sh\n");  // inside the default domains' ranges
  EXPECT_FALSE(CheckIdBase(kDefaultIdBase, etc_));
  EXPECT_FALSE(CheckIdBase(0xffff0000u, etc_));  // no room for the slots
}

TEST(IdRange, SlotsAreDisjointRangesOf65536) {
  IdRange one = IdRangeOfSlot(kDefaultIdBase, 1);
  IdRange two = IdRangeOfSlot(kDefaultIdBase, 2);
  EXPECT_EQ(one.first, kDefaultIdBase + 65536);
  EXPECT_EQ(two.first, one.first + one.count);
  EXPECT_EQ(one.ToHost(1000), kDefaultIdBase + 65536 + 1000);
}

}  // namespace
}  // namespace qrexec::host
