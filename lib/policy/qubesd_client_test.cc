// The small qubesd client (internal.GetSystemInfo) against a fake qubesd.
#include <sys/socket.h>

#include <fstream>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>

#include "base/sys.h"
#include "policy/qubesd_client.h"
#include "policy/test_util.h"

namespace qrexec::policy {
namespace {

using testing::TempDir;

// Serves one connection: records the request (read to EOF), sends `reply`.
class FakeQubesd {
 public:
  FakeQubesd(const std::string& path, std::string reply) {
    auto fd = sys::UnixListen(path);
    EXPECT_TRUE(fd.has_value());
    if (fd) listen_ = std::move(*fd);
    thread_ = std::thread([this, reply] {
      auto conn = sys::Accept(listen_.get());
      if (!conn) return;
      auto req = sys::ReadToEof(conn->get(), 1 << 20);
      if (req) request_ = *req;
      (void)sys::WriteAll(conn->get(), reply);
    });
  }
  ~FakeQubesd() { Join(); }
  void Join() {
    if (thread_.joinable()) thread_.join();
  }
  // Complete after Join().
  const std::string& request() const { return request_; }

 private:
  UniqueFd listen_;
  std::thread thread_;
  std::string request_;
};

std::string SystemInfoJson() {
  std::ifstream in(testing::SharedConformanceDir() + "/system-info.json");
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

TEST(QubesdClient, FetchesSystemInfoWithTheQubesdFraming) {
  TempDir dir;
  std::string path = dir.path() + "/qubesd.sock";
  std::string reply = std::string(1, '0') + '\0' + SystemInfoJson();
  Result<SystemInfo> info;
  {
    FakeQubesd server(path, reply);
    info = FetchSystemInfo(path);
  }
  ASSERT_TRUE(info) << info.error().message;
  EXPECT_EQ(info->domains().size(), 19u);
  EXPECT_NE(info->Find("uuid:b3eb69d0-f9d9-4c3c-ad5c-454500303ea4"), nullptr);
}

TEST(QubesdClient, SendsTheRequestLineAndHalfCloses) {
  TempDir dir;
  std::string path = dir.path() + "/qubesd.sock";
  FakeQubesd server(path, std::string("0") + '\0' + "{\"domains\": {}}");
  EXPECT_TRUE(FetchSystemInfo(path));
  server.Join();
  const std::string& request = server.request();
  EXPECT_EQ(request, std::string("internal.GetSystemInfo+ dom0 name dom0\0", 39));
}

TEST(QubesdClient, ExceptionsAndGarbageAreErrors) {
  TempDir dir;
  {
    FakeQubesd server(dir.path() + "/a.sock", std::string("2") + '\0' + "QubesException" + '\0' + '\0' + "boom" + '\0');
    auto r = QubesdCall(dir.path() + "/a.sock", "internal.GetSystemInfo");
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().kind, ErrorKind::kRefused);
  }
  {
    FakeQubesd server(dir.path() + "/b.sock", "garbage");
    EXPECT_FALSE(QubesdCall(dir.path() + "/b.sock", "internal.GetSystemInfo"));
  }
  EXPECT_EQ(QubesdCall(dir.path() + "/none.sock", "x").error().kind, ErrorKind::kDisconnected);
}

TEST(QubesdClient, SocketPathComesFromTheOptionThenTheEnvironment) {
  EXPECT_EQ(QubesdSocketPath("/x.sock"), "/x.sock");
  ::setenv(kQubesdSocketEnv, "/env.sock", 1);
  EXPECT_EQ(QubesdSocketPath(), "/env.sock");
  ::unsetenv(kQubesdSocketEnv);
  EXPECT_EQ(QubesdSocketPath(), "/run/qubesd.sock");
}

TEST(QubesdClient, PolicyExecUsesTheQubesdSocketFromTheEnvironment) {
  TempDir dir;
  dir.Write("p/30-user.policy", "* * test-vm1 test-vm2 allow\n");
  std::string path = dir.path() + "/qubesd.sock";
  FakeQubesd server(path, std::string(1, '0') + '\0' + SystemInfoJson());
  std::string cmd = "QREXEC_QUBESD_SOCKET=" + path + " " + QREXEC_BIN_DIR +
                    "/qrexec-policy-exec --path " + dir.path() + "/p test-vm1 test-vm2 x > " +
                    dir.path() + "/out";
  EXPECT_EQ(std::system(cmd.c_str()), 0);
  std::ifstream in(dir.path() + "/out");
  std::string first;
  std::getline(in, first);
  EXPECT_EQ(first, "user=DEFAULT");
}

}  // namespace
}  // namespace qrexec::policy
