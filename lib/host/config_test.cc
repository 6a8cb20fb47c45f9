#include <gtest/gtest.h>

#include "host/config.h"

namespace qrexec::host {
namespace {

constexpr std::string_view kGood = R"(
[host]
state_dir = "state"
policy_dir = ["policy.d", "/etc/extra"]
default_dispvm = "default-dvm"

[[domain]]
name = "debian"
class = "TemplateVM"
services = "rpc/debian"

[[domain]]
name = "work"
template = "debian"
label = "blue"
tags = ["dev", "mail"]
autostart = true

[[domain]]
name = "default-dvm"
template = "debian"
template_for_dispvms = true
default_dispvm = "default-dvm"

[[domain]]
name = "fixed"
class = "StandaloneVM"
uuid = "c9024a97-9b15-46cc-8341-38d75d5d421b"
)";

TEST(HostConfig, ParsesDomainsAndResolvesPathsAgainstTheFile) {
  auto config = ParseConfig(kGood, "/etc/qrexec-host/host.toml");
  ASSERT_TRUE(config) << config.error().ToString();
  EXPECT_EQ(config->state_dir, "/etc/qrexec-host/state");
  ASSERT_EQ(config->policy_dirs.size(), 2u);
  EXPECT_EQ(config->policy_dirs[0], "/etc/qrexec-host/policy.d");
  EXPECT_EQ(config->policy_dirs[1], "/etc/extra");
  ASSERT_EQ(config->domains.size(), 4u);
  const DomainConfig* work = config->Find("work");
  ASSERT_NE(work, nullptr);
  EXPECT_EQ(work->klass, DomainClass::kAppVM);
  EXPECT_EQ(work->template_name, "debian");
  EXPECT_EQ(work->label, "blue");
  EXPECT_EQ(work->tags, (std::vector<std::string>{"dev", "mail"}));
  EXPECT_TRUE(work->autostart);
  EXPECT_EQ(work->default_dispvm, "default-dvm");  // from [host]
  EXPECT_EQ(work->default_user, "user");
  EXPECT_TRUE(IsCanonicalUuid(work->uuid));
  EXPECT_EQ(work->uuid, UuidForName("work"));
  EXPECT_EQ(config->Find("debian")->service_dir, "/etc/qrexec-host/rpc/debian");
  EXPECT_EQ(config->Find("fixed")->uuid, "c9024a97-9b15-46cc-8341-38d75d5d421b");
  EXPECT_TRUE(config->Find("default-dvm")->template_for_dispvms);
}

struct BadCase {
  std::string text;
  std::string expected;  // substring of the error, including the line
};

TEST(HostConfig, ReportsBadConfigsWithFileAndLine) {
  const std::vector<BadCase> cases = {
      {"[[domain]]\nname = \"work\"\nclass = \"HVM\"\n", "host.toml:3: unknown class 'HVM'"},
      {"[[domain]]\nname = \"work\"\ntemplate = \"nope\"\n", "host.toml:1: unknown template 'nope'"},
      {"[[domain]]\nname = \"1bad\"\n", "host.toml:2: invalid domain name '1bad'"},
      {"[[domain]]\nname = \"x-dm\"\n", "host.toml:2: invalid domain name"},
      {"[[domain]]\nname = \"dom0\"\n", "host.toml:2: 'dom0' is the host itself"},
      {"[[domain]]\nname = \"a\"\nclass = \"StandaloneVM\"\n[[domain]]\nname = \"a\"\nclass = \"StandaloneVM\"\n",
       "host.toml:4: duplicate domain name 'a'"},
      {"[[domain]]\nname = \"a\"\nlabel = \"pink\"\n", "host.toml:3: unknown label 'pink'"},
      {"[[domain]]\nname = \"a\"\nautostart = \"yes\"\n", "host.toml:3: 'autostart' must be true or false"},
      {"[[domain]]\nname = \"a\"\ncolour = 1\n", "host.toml:3: unknown key 'colour'"},
      {"[[domain]]\nclass = \"StandaloneVM\"\n", "host.toml:1: domain without a name"},
      {"[host]\nstate_dir = \n", "host.toml:2:"},
      {"[[domain]]\nname = \"t\"\nclass = \"TemplateVM\"\n[[domain]]\nname = \"d\"\nclass = \"DispVM\"\ntemplate = \"t\"\n",
       "host.toml:4: 't' is not an AppVM with template_for_dispvms"},
      {"[[domain]]\nname = \"s\"\nclass = \"StandaloneVM\"\n[[domain]]\nname = \"a\"\ntemplate = \"s\"\n",
       "host.toml:4: template 's' is not a TemplateVM"},
      {"[[domain]]\nname = \"a\"\nclass = \"StandaloneVM\"\ndefault_dispvm = \"a\"\n",
       "host.toml:1: default_dispvm 'a' is not a domain with template_for_dispvms"},
      {"[[domain]]\nname = \"a\"\nclass = \"StandaloneVM\"\nuuid = \"ABC\"\n", "host.toml:4: 'ABC' is not"},
      {"domains = 3\n", "host.toml:1: unknown top-level key 'domains'"},
      {"[host]\npolicy_agent = \"maybe\"\n", "host.toml:2: policy_agent 'maybe'"},
      {"[host]\nbroker_max_pending = 0\n", "host.toml:2: 'broker_max_pending' must be a whole number from 1"},
      {"[host]\nbroker_pending_timeout = \"30\"\n", "host.toml:2: 'broker_pending_timeout' must be a whole number"},
  };
  for (const auto& c : cases) {
    auto config = ParseConfig(c.text, "/x/host.toml");
    ASSERT_FALSE(config) << c.text;
    EXPECT_NE(config.error().message.find(c.expected), std::string::npos)
        << "got: " << config.error().message << "\nwanted: " << c.expected;
  }
}

TEST(HostConfig, BrokerBoundsAreOptional) {
  auto defaults = ParseConfig("[host]\n", "/x/host.toml");
  ASSERT_TRUE(defaults) << defaults.error().ToString();
  EXPECT_FALSE(defaults->broker_max_pending);
  EXPECT_FALSE(defaults->broker_pending_timeout);
  auto set = ParseConfig("[host]\nbroker_max_pending = 16\nbroker_pending_timeout = 2\n", "/x/host.toml");
  ASSERT_TRUE(set) << set.error().ToString();
  EXPECT_EQ(set->broker_max_pending, 16u);
  EXPECT_EQ(set->broker_pending_timeout, std::chrono::seconds(2));
}

TEST(HostConfig, DomainLimitsHaveDefaultsHostWideValuesAndPerDomainOverrides) {
  auto config = ParseConfig(R"(
[host]
memory = "512M"
max_processes = 200
uid_base = 1879048192
[[domain]]
name = "a"
class = "StandaloneVM"
[[domain]]
name = "b"
class = "StandaloneVM"
memory = 1073741824
cpu_weight = 50
tmpfs_size = "8M"
home_size = 0
allow_user_namespaces = true
)",
                            "/etc/host.toml");
  ASSERT_TRUE(config) << config.error().ToString();
  const DomainLimits& a = config->Find("a")->limits;
  EXPECT_EQ(a.memory_bytes, 512ULL << 20);
  EXPECT_EQ(a.max_processes, 200u);
  EXPECT_EQ(a.cpu_weight, 100u);
  EXPECT_EQ(a.tmpfs_bytes, 256ULL << 20);
  EXPECT_EQ(a.home_bytes, 4ULL << 30);
  EXPECT_FALSE(a.allow_user_namespaces);
  const DomainLimits& b = config->Find("b")->limits;
  EXPECT_EQ(b.memory_bytes, 1ULL << 30);
  EXPECT_EQ(b.max_processes, 200u);
  EXPECT_EQ(b.cpu_weight, 50u);
  EXPECT_EQ(b.tmpfs_bytes, 8ULL << 20);
  EXPECT_EQ(b.home_bytes, 0u);
  EXPECT_TRUE(b.allow_user_namespaces);
  for (const char* bad : {"memory = \"12X\"", "memory = 0", "memory = \"\"", "cpu_weight = 0",
                          "cpu_weight = 10001", "max_processes = 1", "home_size = \"1M\"", "uid_base = 5"}) {
    auto result = ParseConfig(std::string("[host]\n") + bad + "\n", "/etc/host.toml");
    EXPECT_FALSE(result) << bad;
  }
}

TEST(HostConfig, UuidsAreStableAndDistinct) {
  EXPECT_EQ(UuidForName("work"), UuidForName("work"));
  EXPECT_NE(UuidForName("work"), UuidForName("vault"));
  EXPECT_TRUE(IsCanonicalUuid(UuidForName("vault")));
  EXPECT_EQ(UuidForName("vault")[14], '4');
}

TEST(HostConfig, MissingFileIsNotFound) {
  auto config = LoadConfig("/nonexistent/host.toml");
  ASSERT_FALSE(config);
  EXPECT_EQ(config.error().kind, ErrorKind::kNotFound);
}

}  // namespace
}  // namespace qrexec::host
