// kill -9 of each component in the middle of a call (qrexec-protocol.md
// §1.2-1.5, §2.7): the other ends exit with the documented codes within 5 s,
// no zombies stay behind and the surviving processes return to their idle
// descriptor counts. Also: agent and daemon restarts, and the policy daemon
// going away (the daemons' fallback program decides; never an allow by
// accident).
#include <signal.h>

#include <thread>
#include <utility>

#include "base/sys.h"
#include "fault_util.h"

namespace qrexec::faults {
namespace {

using Faults = FaultTest;

// Lets the held service finish: it prints "got go" and exits 3.
void FinishHeldCall(HeldCall& call, const std::string& context) {
  ASSERT_TRUE(call.client);
  ASSERT_TRUE(call.client->WriteStdin("go\n")) << context;
  call.client->CloseStdin();
  EXPECT_EQ(ReadAll(call.client->stdout_fd(), kFiveSeconds), "got go\n") << context;
  EXPECT_EQ(call.client->Wait(kFiveSeconds).value_or(-1), 3) << context;
}

TEST_F(Faults, KillingTheServiceEndsTheCallWith128PlusSignal) {
  auto call = StartHeldCall("work", "vault");
  ASSERT_GT(call.service, 0);
  ASSERT_EQ(::kill(call.service, SIGKILL), 0);
  EXPECT_EQ(call.client->Wait(kFiveSeconds).value_or(-1), 128 + SIGKILL);
  EXPECT_TRUE(WaitUntil([&] { return CallHandlerDone(call.handler); }, kFiveSeconds));
  ExpectIdleAndNoZombies("after killing the service");
  ExpectCallsWork("after killing the service");
}

TEST_F(Faults, KillingTheCalleesCallHandlerGivesTheCaller255AndTheServiceEof) {
  auto call = StartHeldCall("work", "vault");
  ASSERT_GT(call.handler, 0);
  ASSERT_EQ(::kill(call.handler, SIGKILL), 0);
  // "vchan closed early" before an exit code: -1, i.e. 255.
  EXPECT_EQ(call.client->Wait(kFiveSeconds).value_or(-1), 255);
  // The service loses its stdin and ends.
  EXPECT_TRUE(WaitUntil([&] { return Dead(call.service); }, kFiveSeconds));
  ExpectIdleAndNoZombies("after killing the call handler");
  ExpectCallsWork("after killing the call handler");
}

TEST_F(Faults, KillingTheCalleesAgentLeavesTheRunningCallAloneAndARestartedAgentServesAgain) {
  auto call = StartHeldCall("work", "vault");
  pid_t daemon = qubes_->DaemonPid("vault");
  ASSERT_TRUE(qubes_->KillAgent("vault").has_value());
  // The call's data channel belongs to the handler, not to the agent.
  FinishHeldCall(call, "after killing the callee's agent");
  // Meanwhile the daemon lost its agent: calls to vault are refused, others work.
  EXPECT_TRUE(WaitUntil([&] { return !harness::PathExists(qubes_->DaemonSocket("vault")); }, kFiveSeconds))
      << "the daemon should drop its socket while its agent is away";
  auto refused = Echo("work", "vault", "x");
  EXPECT_NE(refused.exit_code, 0);
  auto other = Echo("work", "other", "y");
  EXPECT_EQ(other.exit_code, 0) << other.err;
  // A new agent for the same domain: the daemon reconnects (§1.2).
  ASSERT_TRUE(qubes_->RestartAgent("vault"));
  EXPECT_TRUE(WaitUntil([&] { return !!sys::UnixConnect(qubes_->DaemonSocket("vault")); }, milliseconds(10000)))
      << qubes_->Logs();
  EXPECT_EQ(qubes_->DaemonPid("vault"), daemon);
  EXPECT_FALSE(Dead(daemon));
  ExpectCallsWork("after restarting the callee's agent");
  EXPECT_NE(Log("daemon.vault").find("agent"), std::string::npos);
  ExpectIdleAndNoZombies("after restarting the callee's agent");
}

TEST_F(Faults, KillingTheCallersAgentLeavesTheRunningCallAlone) {
  auto call = StartHeldCall("work", "vault");
  ASSERT_TRUE(qubes_->KillAgent("work").has_value());
  FinishHeldCall(call, "after killing the caller's agent");
  ASSERT_TRUE(qubes_->RestartAgent("work"));
  EXPECT_TRUE(WaitUntil([&] { return !!sys::UnixConnect(qubes_->DaemonSocket("work")); }, milliseconds(10000)));
  EXPECT_TRUE(WaitUntil([&] { return !!sys::UnixConnect(qubes_->AgentSocket("work")); }, milliseconds(10000)));
  ExpectCallsWork("after restarting the caller's agent");
  RecordIdle();
  ExpectCallsWork("again");
  ExpectIdleAndNoZombies("after restarting the caller's agent");
}

TEST_F(Faults, KillingEitherDaemonLeavesTheConnectedCallAloneAndARestartedDaemonServes) {
  for (const char* victim : {"work", "vault"}) {
    SCOPED_TRACE(victim);
    auto call = StartHeldCall("work", "vault");
    ASSERT_TRUE(qubes_->KillDaemon(victim).has_value());
    FinishHeldCall(call, std::string("after killing the daemon of ") + victim);
    ASSERT_TRUE(qubes_->RestartDaemon(victim)) << qubes_->error();
    ExpectCallsWork(std::string("after restarting the daemon of ") + victim);
    RecordIdle();
    ExpectCallsWork("again");
    ExpectIdleAndNoZombies(std::string("after restarting the daemon of ") + victim);
  }
}

TEST_F(Faults, APendingCallGets126WhenItsDaemonDiesBeforeConnecting) {
  // A stopped policy daemon keeps the request pending (the daemon has no
  // time-out on the policy step, §5.1).
  pid_t policy = qubes_->PolicyDaemonPid();
  ASSERT_EQ(::kill(policy, SIGSTOP), 0);
  auto process = Process::Spawn(qubes_->ClientVm("work", {"vault", "demo.Echo"}));
  ASSERT_TRUE(process);
  std::this_thread::sleep_for(milliseconds(300));
  EXPECT_TRUE(process->Running()) << "the call should wait for the policy";
  ASSERT_TRUE(qubes_->KillDaemon("work").has_value());
  EXPECT_EQ(process->Wait(kFiveSeconds).value_or(-1), 126);
  EXPECT_NE(process->ReadStderr(milliseconds(1000)).find("Request refused"), std::string::npos);
  ASSERT_EQ(::kill(policy, SIGCONT), 0);
  ASSERT_TRUE(qubes_->RestartDaemon("work")) << qubes_->error();
  ExpectCallsWork("after restarting the caller's daemon");
  ExpectIdleAndNoZombies("after a pending call lost its daemon");
}

TEST_F(Faults, KillingQrexecClientVmEndsTheServiceAndFreesEverything) {
  auto call = StartHeldCall("work", "vault");
  ExpectKillingTheCallerEndsTheCall(call, "after killing qrexec-client-vm");
}

TEST_F(Faults, KillingThePolicyDaemonWhileACallWaitsLetsTheFallbackDecide) {
  pid_t policy = qubes_->PolicyDaemonPid();
  ASSERT_EQ(::kill(policy, SIGSTOP), 0);
  auto allowed = Process::Spawn(qubes_->ClientVm("work", {"vault", "demo.Echo"}));
  auto denied = Process::Spawn(qubes_->ClientVm("work", {"vault", "demo.Denied"}));
  ASSERT_TRUE(allowed && denied);
  std::this_thread::sleep_for(milliseconds(300));
  ASSERT_TRUE(qubes_->KillPolicyDaemon().has_value());
  ASSERT_TRUE(allowed->WriteStdin("via fallback"));
  allowed->CloseStdin();
  EXPECT_EQ(ReadAll(allowed->stdout_fd(), milliseconds(10000)), "via fallback");
  EXPECT_EQ(allowed->Wait(kFiveSeconds).value_or(-1), 0);
  EXPECT_EQ(denied->Wait(kFiveSeconds).value_or(-1), 126);
  EXPECT_NE(Log("daemon.work").find("falling back"), std::string::npos);
  ExpectIdleAndNoZombies("after killing the policy daemon");
}

// A policy agent that takes every question and never answers: the call
// waits on its "ask". When the agent goes away, or the policy daemon dies
// while asking, the call is refused (126), never allowed.
TEST_F(Faults, ACallWaitingOnAnAskIsRefusedWhenTheAgentOrThePolicyDaemonDies) {
  std::string socket = qubes_->root() + "/run/policy-agent.sock";
  auto listener = sys::UnixListen(socket, 16);
  ASSERT_TRUE(listener);
  ASSERT_TRUE(qubes_->KillPolicyDaemon().has_value());
  qubes_->SetPolicyDaemonArgs({"--agent-socket", socket});
  ASSERT_TRUE(qubes_->RestartPolicyDaemon()) << qubes_->error();
  auto ask = [&]() -> std::pair<std::unique_ptr<Process>, UniqueFd> {
    auto process = Process::Spawn(qubes_->ClientVm("work", {"vault", "demo.Ask"}));
    if (!process) return {};
    // Skip policy.Notify connections; keep the first policy.Ask.
    auto deadline = sys::Deadline::After(milliseconds(10000));
    for (;;) {
      if (!sys::WaitReadable(listener->get(), deadline)) return {};
      auto question = sys::Accept(listener->get());
      if (!question) return {};
      auto request = sys::ReadToEof(question->get(), 1 << 16, sys::Deadline::After(milliseconds(5000)));
      if (request && request->rfind("policy.Ask", 0) == 0)
        return {std::make_unique<Process>(std::move(*process)), std::move(*question)};
    }
  };
  {  // control: an answer allows the call
    auto [call, question] = ask();
    ASSERT_TRUE(call && question.valid()) << "the policy daemon did not ask\n" << qubes_->Logs();
    ASSERT_TRUE(sys::WriteAll(question.get(), "allow:vault", sys::Deadline::After(kFiveSeconds)));
    question.reset();
    call->CloseStdin();
    EXPECT_EQ(call->ReadStdout(kFiveSeconds), "asked-and-allowed\n");
    EXPECT_EQ(call->Wait(kFiveSeconds).value_or(-1), 0);
  }
  {
    auto [call, question] = ask();
    ASSERT_TRUE(call && question.valid()) << "the policy daemon did not ask";
    std::this_thread::sleep_for(milliseconds(200));
    EXPECT_TRUE(call->Running()) << "the call should wait for the answer";
    question.reset();  // the agent dies without answering
    EXPECT_EQ(call->Wait(kFiveSeconds).value_or(-1), 126);
  }
  {
    auto [call, question] = ask();
    ASSERT_TRUE(call && question.valid()) << "the policy daemon did not ask";
    ASSERT_TRUE(qubes_->KillPolicyDaemon().has_value());
    // The fallback (qrexec-policy-exec without this agent) cannot ask either.
    EXPECT_EQ(call->Wait(kFiveSeconds).value_or(-1), 126);
    EXPECT_EQ(call->ReadStdout(milliseconds(1000)), "");
  }
  ExpectIdleAndNoZombies("after a failed ask");
}

TEST_F(Faults, WithThePolicyDaemonDownTheFallbackDecidesAndNeverAllowsADeniedCall) {
  ASSERT_TRUE(qubes_->KillPolicyDaemon().has_value());
  auto allowed = Echo("work", "vault", "fallback");
  EXPECT_EQ(allowed.exit_code, 0) << allowed.err;
  EXPECT_EQ(allowed.out, "fallback");
  auto denied = harness::RunProgram(qubes_->ClientVm("work", {"vault", "demo.Denied"}), {}, milliseconds(20000));
  EXPECT_EQ(denied.exit_code, 126);
  auto no_rule = harness::RunProgram(qubes_->ClientVm("work", {"vault", "demo.NoRule"}), {}, milliseconds(20000));
  EXPECT_EQ(no_rule.exit_code, 126);
  ExpectIdleAndNoZombies("policy daemon down");

  // A fallback program that is missing, then one whose policy does not load:
  // every call is refused.
  std::string broken_dir = qubes_->root() + "/broken-policy";
  harness::WriteFile(broken_dir + "/30-broken.policy", "demo.Echo * @anyvm @anyvm allow target=\n!include nothere\n");
  std::string broken = qubes_->root() + "/broken-fallback";
  harness::WriteScript(broken, "exec '" + harness::BinPath("qrexec-policy-exec") + "' --path '" + broken_dir +
                                   "' \"$@\"\n");
  for (const std::string& program : {qubes_->root() + "/no-such-program", broken}) {
    SCOPED_TRACE(program);
    qubes_->SetPolicyProgram(program);
    ASSERT_TRUE(qubes_->KillDaemon("work").has_value());
    ASSERT_TRUE(qubes_->RestartDaemon("work")) << qubes_->error();
    auto refused = Echo("work", "vault", "x");
    EXPECT_EQ(refused.exit_code, 126) << refused.err;
    EXPECT_EQ(refused.out, "");
  }
  // And back: the policy daemon answers again.
  ASSERT_TRUE(qubes_->RestartPolicyDaemon()) << qubes_->error();
  ExpectCallsWork("after restarting the policy daemon");
}

}  // namespace
}  // namespace qrexec::faults
