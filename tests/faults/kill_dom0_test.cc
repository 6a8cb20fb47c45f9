// kill -9 in calls with dom0 at one end: dom0 -> VM through qrexec-client,
// and VM -> dom0 where the daemon's qrexec-client helper runs the service
// (qrexec-protocol.md §1.3, §2.11).
#include <signal.h>

#include "fault_util.h"

namespace qrexec::faults {
namespace {

using Dom0Faults = FaultTest;

SpawnOptions Dom0ToVault(MiniQubes& qubes) {
  return qubes.Client({"-d", "vault", "DEFAULT:QUBESRPC demo.Hold dom0"});
}

TEST_F(Dom0Faults, KillingQrexecClientEndsTheServiceInTheVm) {
  auto call = StartHeld(Dom0ToVault(*qubes_), "vault", qubes_->AgentPid("vault"));
  ExpectKillingTheCallerEndsTheCall(call, "after killing qrexec-client");
}

TEST_F(Dom0Faults, KillingTheCallHandlerGivesQrexecClient255) {
  auto call = StartHeld(Dom0ToVault(*qubes_), "vault", qubes_->AgentPid("vault"));
  ASSERT_GT(call.handler, 0);
  ASSERT_EQ(::kill(call.handler, SIGKILL), 0);
  EXPECT_EQ(call.client->Wait(kFiveSeconds).value_or(-1), 255);
  EXPECT_TRUE(WaitUntil([&] { return Dead(call.service); }, kFiveSeconds));
  ExpectIdleAndNoZombies("after killing the call handler");
}

TEST_F(Dom0Faults, KillingTheCallerOfADom0ServiceEndsTheServiceAndItsHelper) {
  auto call = StartHeld(qubes_->ClientVm("work", {"@adminvm", "demo.Hold"}), "dom0", qubes_->DaemonPid("work"));
  ExpectKillingTheCallerEndsTheCall(call, "after killing the caller of a dom0 service");
}

TEST_F(Dom0Faults, KillingTheDom0ServiceGivesTheCaller128PlusSignal) {
  auto call = StartHeld(qubes_->ClientVm("work", {"@adminvm", "demo.Hold"}), "dom0", qubes_->DaemonPid("work"));
  ASSERT_GT(call.service, 0);
  ASSERT_EQ(::kill(call.service, SIGKILL), 0);
  EXPECT_EQ(call.client->Wait(kFiveSeconds).value_or(-1), 128 + SIGKILL);
  ExpectIdleAndNoZombies("after killing a dom0 service");
}

TEST_F(Dom0Faults, KillingTheDaemonLeavesARunningDom0CallToItsHelper) {
  auto call = StartHeld(qubes_->ClientVm("work", {"@adminvm", "demo.Hold"}), "dom0", qubes_->DaemonPid("work"));
  ASSERT_TRUE(call.client);
  ASSERT_TRUE(qubes_->KillDaemon("work").has_value());
  ASSERT_TRUE(call.client->WriteStdin("go\n"));
  call.client->CloseStdin();
  EXPECT_EQ(ReadAll(call.client->stdout_fd(), kFiveSeconds), "got go\n");
  EXPECT_EQ(call.client->Wait(kFiveSeconds).value_or(-1), 3);
  ASSERT_TRUE(qubes_->RestartDaemon("work")) << qubes_->error();
  ExpectCallsWork("after restarting the daemon of work");
  ExpectIdleAndNoZombies("after restarting the daemon of work");
}

}  // namespace
}  // namespace qrexec::faults
