// Host lifecycle and admin methods without root: the sandbox program is a
// stand-in ("fake bwrap" that just sleeps), no daemons.
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <future>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "admin/client.h"
#include "host/host.h"
#include "host/process.h"
#include "host/sandbox.h"

namespace qrexec::host {
namespace {

using namespace std::chrono_literals;

constexpr std::string_view kConfig = R"(
[host]
default_dispvm = "dvm"

[[domain]]
name = "debian"
class = "TemplateVM"
label = "black"

[[domain]]
name = "work"
template = "debian"
label = "blue"
tags = ["dev"]

[[domain]]
name = "dvm"
template = "debian"
template_for_dispvms = true
)";

class HostTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/host_test.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    ASSERT_EQ(::chmod(tmpl, 0711), 0);  // as root, the host refuses a state dir others cannot search
    // The sandbox's first program must exist (the fake bwrap never runs it).
    std::filesystem::create_directories(dir_ + "/bin");
    std::ofstream(dir_ + "/bin/qrexec-sandbox-init") << "#!/bin/sh\nexec \"$@\"\n";
    ::chmod((dir_ + "/bin/qrexec-sandbox-init").c_str(), 0755);
    auto config = ParseConfig(kConfig, dir_ + "/host.toml");
    ASSERT_TRUE(config) << config.error().ToString();
    config->state_dir = dir_ + "/state";
    fake_bwrap_ = dir_ + "/fake-bwrap";
    std::ofstream(fake_bwrap_) << "#!/bin/sh\nexec sleep 1000\n";
    ::chmod(fake_bwrap_.c_str(), 0755);
    HostOptions options;
    options.config = *config;
    options.bin_dir = dir_ + "/bin";
    options.bwrap = fake_bwrap_;
    options.start_daemons = false;
    options.start_policy_daemon = false;
    options.sandbox_command = {"/bin/true"};
    host_ = std::make_unique<Host>(loop_, options);
    ASSERT_TRUE(host_->Init());
  }
  void TearDown() override {
    host_.reset();
    std::filesystem::remove_all(dir_);
  }

  Result<admin::Reply> Call(const std::string& method, const std::string& dest, const std::string& payload = {},
                            bool control = false) {
    admin::Request request;
    request.method = method;
    request.dest = dest;
    request.payload = payload;
    std::promise<Result<admin::Reply>> promise;
    auto future = promise.get_future();
    std::string path = control ? host_->paths().control_socket : host_->paths().qubesd_socket;
    std::thread client([&] { promise.set_value(admin::Call(path, request, sys::Deadline::After(10s))); });
    auto limit = sys::Clock::now() + 20s;
    while (future.wait_for(0s) != std::future_status::ready && sys::Clock::now() < limit)
      EXPECT_TRUE(loop_.RunOnce(10ms));
    client.join();
    return future.get();
  }

  std::string dir_;
  std::string fake_bwrap_;
  event::Loop loop_;
  std::unique_ptr<Host> host_;
};

TEST_F(HostTest, StartsAndKillsADomainThroughTheAdminSocket) {
  auto start = Call("admin.vm.Start", "work");
  ASSERT_TRUE(start);
  EXPECT_TRUE(start->ok) << start->exception_type << ": " << start->message;
  auto pid = host_->SandboxPid("work");
  ASSERT_TRUE(pid);
  EXPECT_EQ(::kill(*pid, 0), 0);
  auto again = Call("admin.vm.Start", "work");
  ASSERT_TRUE(again);
  EXPECT_EQ(again->exception_type, admin::kNotHaltedError);
  auto list = Call("admin.vm.List", "dom0");
  ASSERT_TRUE(list && list->ok);
  EXPECT_EQ(list->payload,
            "debian class=TemplateVM state=Halted\n"
            "dom0 class=AdminVM state=Running\n"
            "dvm class=AppVM state=Halted\n"
            "work class=AppVM state=Running\n");
  EXPECT_TRUE(std::filesystem::exists(host_->paths().BrokerSocket("work")));
  auto kill = Call("admin.vm.Kill", "uuid:" + UuidForName("work"));
  ASSERT_TRUE(kill);
  EXPECT_TRUE(kill->ok) << kill->message;
  EXPECT_FALSE(host_->SandboxPid("work"));
  EXPECT_NE(::kill(*pid, 0), 0);  // reaped: gone
  EXPECT_FALSE(std::filesystem::exists(host_->paths().BrokerSocket("work")));
  auto kill_again = Call("admin.vm.Kill", "work");
  ASSERT_TRUE(kill_again);
  EXPECT_EQ(kill_again->exception_type, admin::kNotStartedError);
}

TEST_F(HostTest, UnknownDomainsAreNotFound) {
  for (const char* method : {"admin.vm.Start", "admin.vm.Kill", "admin.vm.CreateDisposable", "admin.vm.List"}) {
    auto reply = Call(method, "nosuch");
    ASSERT_TRUE(reply);
    EXPECT_EQ(reply->exception_type, admin::kNotFoundError) << method;
  }
}

TEST_F(HostTest, CreatesDisposablesThatAreDestroyedWhenKilled) {
  auto created = Call("admin.vm.CreateDisposable", "dvm", "uuid");
  ASSERT_TRUE(created && created->ok);
  ASSERT_EQ(created->payload.rfind("uuid:", 0), 0u);
  EXPECT_TRUE(IsCanonicalUuid(created->payload.substr(5)));
  // From a domain whose default_dispvm is the template: a second one.
  auto second = Call("admin.vm.CreateDisposable", "work");
  ASSERT_TRUE(second && second->ok);
  EXPECT_EQ(second->payload, "disp2");
  ASSERT_TRUE(host_->Exists("disp1"));
  auto start = Call("admin.vm.Start", created->payload);
  ASSERT_TRUE(start && start->ok) << start->message;
  std::string storage = host_->paths().disp_dir + "/disp1";
  EXPECT_TRUE(std::filesystem::is_directory(storage + "/home"));
  auto kill = Call("admin.vm.Kill", created->payload);
  ASSERT_TRUE(kill && kill->ok);
  EXPECT_FALSE(host_->Exists("disp1"));
  EXPECT_FALSE(std::filesystem::exists(storage));
  // Never started: killing destroys it too.
  auto kill2 = Call("admin.vm.Kill", "disp2");
  ASSERT_TRUE(kill2 && kill2->ok);
  EXPECT_FALSE(host_->Exists("disp2"));
  // dom0 uses the host's default_dispvm. dispN names are never reused.
  auto from_dom0 = Call("admin.vm.CreateDisposable", "dom0");
  ASSERT_TRUE(from_dom0 && from_dom0->ok);
  EXPECT_EQ(from_dom0->payload, "disp3");
}

TEST_F(HostTest, SystemInfoHasTheShapeThePolicyEngineReads) {
  auto reply = Call("internal.GetSystemInfo", "dom0");
  ASSERT_TRUE(reply && reply->ok);
  auto info = nlohmann::json::parse(reply->payload);
  ASSERT_TRUE(info.contains("domains"));
  ASSERT_EQ(info.size(), 1u);
  auto domains = info["domains"];
  EXPECT_EQ(domains.size(), 4u);
  for (const char* key : {"internal", "tags", "type", "template_for_dispvms", "default_dispvm", "icon", "label",
                          "guivm", "relayvm", "transport_rpc", "power_state", "uuid"}) {
    for (auto& [name, entry] : domains.items()) EXPECT_TRUE(entry.contains(key)) << name << " lacks " << key;
  }
  EXPECT_EQ(domains["dom0"]["type"], "AdminVM");
  EXPECT_EQ(domains["dom0"]["uuid"], kDom0Uuid);
  EXPECT_EQ(domains["dom0"]["default_dispvm"], "dvm");
  EXPECT_EQ(domains["work"]["type"], "AppVM");
  EXPECT_EQ(domains["work"]["tags"], nlohmann::json::array({"dev"}));
  EXPECT_EQ(domains["work"]["label"], "0x3465a4");
  EXPECT_EQ(domains["work"]["icon"], "appvm-blue");
  EXPECT_EQ(domains["work"]["power_state"], "Halted");
  EXPECT_EQ(domains["work"]["uuid"], UuidForName("work"));
  EXPECT_EQ(domains["dvm"]["template_for_dispvms"], true);
  EXPECT_TRUE(domains["debian"]["internal"].is_null());
  EXPECT_EQ(domains["work"]["guivm"], "dom0");
  EXPECT_TRUE(domains["dom0"]["guivm"].is_null());
}

TEST_F(HostTest, TheControlSocketListsDomainsWithTheirTemplate) {
  auto reply = Call("host.List", "dom0", {}, true);
  ASSERT_TRUE(reply && reply->ok);
  EXPECT_NE(reply->payload.find("work AppVM Halted debian 2 " + UuidForName("work") + "\n"), std::string::npos)
      << reply->payload;
  // host.* methods are not on the qubesd socket.
  auto hidden = Call("host.List", "dom0");
  ASSERT_TRUE(hidden);
  EXPECT_FALSE(hidden->ok);
}

TEST_F(HostTest, ADomainWhoseSandboxEndsIsHalted) {
  auto start = Call("admin.vm.Start", "work");
  ASSERT_TRUE(start && start->ok);
  auto pid = host_->SandboxPid("work");
  ASSERT_TRUE(pid);
  ::kill(*pid, SIGKILL);
  auto limit = sys::Clock::now() + 10s;
  while (host_->SandboxPid("work") && sys::Clock::now() < limit) ASSERT_TRUE(loop_.RunOnce(20ms));
  EXPECT_FALSE(host_->SandboxPid("work"));
  auto list = Call("admin.vm.List", "work");
  ASSERT_TRUE(list && list->ok);
  EXPECT_EQ(list->payload, "work class=AppVM state=Halted\n");
}

TEST(Process, ParentOfReadsTheParentAlsoPastAParenthesisInTheName) {
  EXPECT_EQ(ParentOf(::getpid()), ::getppid());
  char tmpl[] = "/tmp/parent_of.XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  std::string odd = std::string(tmpl) + "/a) 1 2";  // comm "a) 1 2"
  std::filesystem::create_symlink("/bin/sleep", odd);
  SpawnOptions options;
  options.argv = {odd, "5"};
  auto child = Spawn(options);
  ASSERT_TRUE(child);
  EXPECT_EQ(ParentOf(child->pid()), ::getpid());
  child->Stop(std::chrono::milliseconds(100));
  EXPECT_FALSE(ParentOf(child->pid()));
  std::filesystem::remove_all(tmpl);
}

// qrexec-host runs with its soft descriptor limit raised to the hard one;
// what it starts (sandboxes, daemons) gets the usual 1024 back.
TEST(Process, ChildrenGetTheUsualDescriptorSoftLimitBack) {
  rlimit saved{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &saved), 0);
  if (saved.rlim_max <= 1024) GTEST_SKIP() << "the hard descriptor limit is 1024 or less: nothing to tell apart";
  rlimit raised = saved;
  raised.rlim_cur = raised.rlim_max;
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &raised), 0);
  char tmpl[] = "/tmp/spawn_limit.XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  std::string out = std::string(tmpl) + "/out";
  SpawnOptions options;
  options.argv = {"/bin/sh", "-c", "ulimit -Sn; ulimit -Hn"};
  options.log_path = out;
  auto child = Spawn(options);
  ::setrlimit(RLIMIT_NOFILE, &saved);
  ASSERT_TRUE(child);
  auto status = child->Wait(sys::Deadline::After(10s));
  ASSERT_TRUE(status);
  std::ifstream in(out);
  std::string soft, hard;
  in >> soft >> hard;
  EXPECT_EQ(soft, "1024");
  EXPECT_EQ(hard, saved.rlim_max == RLIM_INFINITY ? "unlimited" : std::to_string(saved.rlim_max));
  std::filesystem::remove_all(tmpl);
}

TEST(Sandbox, TheCommandLineHasEveryIsolationOption) {
  SandboxSpec spec;
  spec.name = "work";
  spec.domain_id = 3;
  spec.home_dir = "/state/work/home";
  spec.broker_socket = "/state/broker/work.sock";
  spec.command = {"/usr/local/bin/qrexec-agent", "--no-fork-server"};
  auto args = BuildBwrapArgs(spec);
  auto has = [&args](std::initializer_list<std::string> seq) {
    return std::search(args.begin(), args.end(), seq.begin(), seq.end()) != args.end();
  };
  EXPECT_EQ(args.front(), "/usr/bin/bwrap");
  for (const char* flag : {"--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-net", "--die-with-parent",
                           "--clearenv", "--new-session"})
    EXPECT_TRUE(has({flag})) << flag;
  EXPECT_FALSE(has({"--unshare-user"}));
  EXPECT_TRUE(has({"--hostname", "work"}));
  EXPECT_TRUE(has({"--cap-drop", "ALL"}));
  EXPECT_TRUE(has({"--ro-bind", "/usr", "/usr"}));
  EXPECT_TRUE(has({"--bind", "/state/work/home", "/home/user"}));
  EXPECT_TRUE(has({"--ro-bind", "/state/broker/work.sock", "/run/qubes/broker.sock"}));
  EXPECT_TRUE(has({"--setenv", "QREXEC_BROKER_SOCKET", "/run/qubes/broker.sock"}));
  EXPECT_TRUE(has({"--setenv", "VCHAN_DOMAIN", "3"}));
  EXPECT_TRUE(has({"--tmpfs", "/tmp"}));
  EXPECT_TRUE(has({"--tmpfs", "/run"}));
  EXPECT_TRUE(has({"--", "/usr/local/bin/qrexec-agent", "--no-fork-server"}));
  EXPECT_EQ(args.back(), "--no-fork-server");
}

}  // namespace
}  // namespace qrexec::host
