// Unit tests of the pure parts of agent/: option parsing, target conversion,
// request ids and the trigger request encoding.
#include <gtest/gtest.h>

#include <initializer_list>
#include <string>
#include <vector>

#include "agent/client_vm.h"
#include "agent/options.h"
#include "agent/trigger_server.h"

namespace qrexec::agent {
namespace {

// getopt wants mutable argv.
class Args {
 public:
  Args(std::initializer_list<const char*> args) {
    for (const char* a : args) storage_.emplace_back(a);
    for (auto& s : storage_) argv_.push_back(s.data());
    argv_.push_back(nullptr);
  }
  int argc() const { return static_cast<int>(storage_.size()); }
  char** argv() { return argv_.data(); }

 private:
  std::vector<std::string> storage_;
  std::vector<char*> argv_;
};

template <class T>
int ExitStatusOf(const Parsed<T>& parsed) {
  return std::get<ExitNow>(parsed).status;
}

TEST(AgentOptions, DefaultsMatchQubes) {
  Args args{"qrexec-agent"};
  auto parsed = ParseAgentArgs(args.argc(), args.argv());
  auto& options = std::get<AgentOptions>(parsed);
  EXPECT_EQ(options.agent_socket, "/var/run/qubes/qrexec-agent");
  EXPECT_EQ(options.fork_server_socket_format, "/var/run/qubes/qrexec-server.%s.sock");
  EXPECT_TRUE(options.use_fork_server);
  EXPECT_EQ(options.trigger_timeout, std::chrono::seconds(5));
}

TEST(AgentOptions, TriggerTimeoutIsInSecondsAndMayBeAFraction) {
  Args args{"qrexec-agent", "--trigger-timeout=0.25"};
  auto parsed = ParseAgentArgs(args.argc(), args.argv());
  EXPECT_EQ(std::get<AgentOptions>(parsed).trigger_timeout, std::chrono::milliseconds(250));
  for (const char* bad : {"--trigger-timeout=0", "--trigger-timeout=x", "--trigger-timeout=-1"}) {
    Args bad_args{"qrexec-agent", bad};
    EXPECT_EQ(ExitStatusOf(ParseAgentArgs(bad_args.argc(), bad_args.argv())), 2) << bad;
  }
}

TEST(AgentOptions, LongAndShortFormsAreAccepted) {
  Args args{"qrexec-agent", "-S", "--agent-socket=/tmp/a", "-s", "/tmp/f.%s"};
  auto parsed = ParseAgentArgs(args.argc(), args.argv());
  auto& options = std::get<AgentOptions>(parsed);
  EXPECT_EQ(options.agent_socket, "/tmp/a");
  EXPECT_EQ(options.fork_server_socket_format, "/tmp/f.%s");
  EXPECT_FALSE(options.use_fork_server);
}

TEST(AgentOptions, PamSessionIsOnByDefaultWithTheInstalledHelper) {
  Args args{"qrexec-agent"};
  auto parsed = ParseAgentArgs(args.argc(), args.argv());
  auto helper = PamSessionFromOptions(std::get<AgentOptions>(parsed));
  if (!QREXEC_PAM_DEFAULT) {
    EXPECT_FALSE(helper) << "built without libpam: direct exec by default";
    return;
  }
  ASSERT_TRUE(helper);
  EXPECT_EQ(helper->path, "/usr/lib/qubes/qrexec-pam-session");
  EXPECT_EQ(helper->confdir, "");
}

TEST(AgentOptions, PamSessionCanBeTurnedOffOrPointedElsewhere) {
  Args off{"qrexec-agent", "--no-pam-session"};
  auto parsed_off = ParseAgentArgs(off.argc(), off.argv());
  EXPECT_FALSE(PamSessionFromOptions(std::get<AgentOptions>(parsed_off)));

  Args on{"qrexec-agent", "--no-pam-session", "--pam-session", "--pam-session-helper=/x/h",
          "--pam-confdir=/x/pam.d"};
  auto parsed_on = ParseAgentArgs(on.argc(), on.argv());
  auto helper = PamSessionFromOptions(std::get<AgentOptions>(parsed_on));
  ASSERT_TRUE(helper);
  EXPECT_EQ(helper->path, "/x/h");
  EXPECT_EQ(helper->confdir, "/x/pam.d");
}

TEST(AgentOptions, HelpAndUnknownOptionsExitTwo) {
  for (const char* bad : {"-h", "--help", "-x"}) {
    Args args{"qrexec-agent", bad};
    EXPECT_EQ(ExitStatusOf(ParseAgentArgs(args.argc(), args.argv())), 2) << bad;
  }
}

TEST(AgentOptions, StrayArgumentsAreIgnoredAsInQubes) {
  Args args{"qrexec-agent", "extra", "-S"};
  auto parsed = ParseAgentArgs(args.argc(), args.argv());
  ASSERT_TRUE(std::holds_alternative<AgentOptions>(parsed));
  EXPECT_FALSE(std::get<AgentOptions>(parsed).use_fork_server);
}

TEST(ClientVmOptions, ParsesEveryOption) {
  Args args{"qrexec-client-vm",
            "--buffer-size=1024",
            "-t",
            "-T",
            "-a",
            "/tmp/s",
            "-p",
            "pre",
            "-s",
            "src",
            "target",
            "svc+arg",
            "/bin/prog",
            "-x",
            "y"};
  auto parsed = ParseClientVmArgs(args.argc(), args.argv());
  auto& o = std::get<ClientVmOptions>(parsed);
  EXPECT_EQ(o.buffer_size, 1024u);
  EXPECT_EQ(o.filter_stdout, Filter::kOn);
  EXPECT_EQ(o.filter_stderr, Filter::kOn);
  EXPECT_EQ(o.agent_socket, "/tmp/s");
  EXPECT_EQ(o.prefix_data, "pre");
  EXPECT_EQ(o.source_qube, "src");
  EXPECT_EQ(o.target, "target");
  EXPECT_EQ(o.service, "svc+arg");
  EXPECT_EQ(o.local_program, (std::vector<std::string>{"/bin/prog", "-x", "y"}));
}

TEST(ClientVmOptions, NoFilterOptionsTurnFilteringOff) {
  Args args{"qrexec-client-vm", "--no-filter-escape-chars-stdout",
            "--no-filter-escape-chars-stderr", "t", "s"};
  auto parsed = ParseClientVmArgs(args.argc(), args.argv());
  auto& o = std::get<ClientVmOptions>(parsed);
  EXPECT_EQ(o.filter_stdout, Filter::kOff);
  EXPECT_EQ(o.filter_stderr, Filter::kOff);
}

TEST(ClientVmOptions, UsageErrorsExitTwoAndHelpExitsZero) {
  Args help{"qrexec-client-vm", "-h"};
  EXPECT_EQ(ExitStatusOf(ParseClientVmArgs(help.argc(), help.argv())), 0);
  Args too_few{"qrexec-client-vm", "target"};
  EXPECT_EQ(ExitStatusOf(ParseClientVmArgs(too_few.argc(), too_few.argv())), 2);
  Args twice_p{"qrexec-client-vm", "-p", "a", "-p", "b", "t", "s"};
  EXPECT_EQ(ExitStatusOf(ParseClientVmArgs(twice_p.argc(), twice_p.argv())), 2);
  Args twice_s{"qrexec-client-vm", "-s", "a", "--source-qube=b", "t", "s"};
  EXPECT_EQ(ExitStatusOf(ParseClientVmArgs(twice_s.argc(), twice_s.argv())), 2);
  Args socket_and_program{"qrexec-client-vm", "--use-stdin-socket", "t", "s", "/bin/true"};
  EXPECT_EQ(ExitStatusOf(ParseClientVmArgs(socket_and_program.argc(), socket_and_program.argv())),
            2);
  Args bad_size{"qrexec-client-vm", "--buffer-size=x", "t", "s"};
  EXPECT_EQ(ExitStatusOf(ParseClientVmArgs(bad_size.argc(), bad_size.argv())), 1);
}

TEST(ClientVmOptions, OptionParsingStopsAtTheFirstNonOption) {
  Args args{"qrexec-client-vm", "t", "s", "/bin/prog", "-t"};
  auto parsed = ParseClientVmArgs(args.argc(), args.argv());
  auto& o = std::get<ClientVmOptions>(parsed);
  EXPECT_EQ(o.filter_stdout, Filter::kDefault);
  EXPECT_EQ(o.local_program, (std::vector<std::string>{"/bin/prog", "-t"}));
}

TEST(ForkServerOptions, MoreThanOneArgumentExitsOne) {
  Args args{"qrexec-fork-server", "a", "b"};
  EXPECT_EQ(ExitStatusOf(ParseForkServerArgs(args.argc(), args.argv())), 1);
  Args one{"qrexec-fork-server", "/tmp/x.sock"};
  EXPECT_EQ(std::get<ForkServerOptions>(ParseForkServerArgs(one.argc(), one.argv())).socket_path,
            "/tmp/x.sock");
}

TEST(Names, TargetDollarBecomesAtAndIsCutTo63Bytes) {
  EXPECT_EQ(ConvertTargetName("$dispvm:$x"), "@dispvm:@x");
  EXPECT_EQ(ConvertTargetName(std::string(70, 'a')), std::string(63, 'a'));
}

TEST(Names, ForkServerPathReplacesPercentS) {
  EXPECT_EQ(ForkServerSocketPath("/run/q.%s.sock", "user"), "/run/q.user.sock");
  EXPECT_EQ(ForkServerSocketPath("/run/plain", "user"), "/run/plain");
}

TEST(SocketIdent, RoundTripsAndRejectsOtherText) {
  EXPECT_EQ(SocketIdent(7), "SOCKET7");
  EXPECT_EQ(ParseSocketIdent("SOCKET7"), 7);
  EXPECT_EQ(ParseSocketIdent("SOCKET"), std::nullopt);
  EXPECT_EQ(ParseSocketIdent("SOCKET07"), std::nullopt);
  EXPECT_EQ(ParseSocketIdent("SOCKET-1"), std::nullopt);
  EXPECT_EQ(ParseSocketIdent("SOCKET99999999999"), std::nullopt);
  EXPECT_EQ(ParseSocketIdent("socket7"), std::nullopt);
}

TEST(TriggerRequest, HasTheProtocolFourLayout) {
  ClientVmOptions options;
  options.target = "$dispvm";
  options.service = "foo.Bar+arg";
  options.source_qube = "src";
  auto bytes = BuildTriggerRequest(options);
  ASSERT_TRUE(bytes);
  ASSERT_EQ(bytes->size(), 8u + 160u + 12u);
  auto text = std::string(reinterpret_cast<const char*>(bytes->data()), bytes->size());
  EXPECT_EQ(text.substr(8, 4), std::string("src\0", 4));
  EXPECT_EQ(text.substr(8 + 64, 8), std::string("@dispvm\0", 8));
  EXPECT_EQ(text.substr(8 + 128, 7), std::string("SOCKET\0", 7));
  EXPECT_EQ(text.substr(8 + 160), std::string("foo.Bar+arg\0", 12));
}

}  // namespace
}  // namespace qrexec::agent
