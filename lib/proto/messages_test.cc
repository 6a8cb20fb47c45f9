// Decoders and encoders of messages.h. Frames are built by hand here (not
// with the encoders) so that both sides are checked against the layouts of
// qrexec-protocol.md §2.4.
#include "proto/messages.h"

#include <gtest/gtest.h>

#include <string>

#include "proto/handshake.h"

namespace qrexec::proto {
namespace {

using namespace std::string_literals;

constexpr uint32_t T(MsgType type) { return static_cast<uint32_t>(type); }

std::span<const std::byte> B(const std::string& s) {
  return std::as_bytes(std::span<const char>(s.data(), s.size()));
}

std::string S(const Bytes& bytes) {
  return std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size());
}

std::string U32(uint32_t v) {
  std::string out(4, '\0');
  StoreU32(reinterpret_cast<std::byte*>(out.data()), v);
  return out;
}

std::string Field(std::string text, size_t size) {
  text.resize(size, '\0');
  return text;
}

std::string TriggerV2(const std::string& service, const std::string& target,
                      const std::string& id) {
  return Field(service, 64) + Field(target, 32) + Field(id, 32);
}
// `service` is the raw tail, including (or deliberately not) its NUL.
std::string TriggerV3(const std::string& target, const std::string& id,
                      const std::string& service) {
  return Field(target, 64) + Field(id, 32) + service;
}
std::string TriggerV4(const std::string& source, const std::string& target, const std::string& id,
                      const std::string& service) {
  return Field(source, 64) + Field(target, 64) + Field(id, 32) + service;
}

Decoded<AgentControlMessage> FromAgent(MsgType type, const std::string& body, uint32_t version) {
  return DecodeControlFromAgent(Header{T(type), static_cast<uint32_t>(body.size())}, B(body),
                                version);
}
Decoded<DaemonControlMessage> FromDaemon(MsgType type, const std::string& body,
                                         uint32_t version = 4) {
  return DecodeControlFromDaemon(Header{T(type), static_cast<uint32_t>(body.size())}, B(body),
                                 version);
}
Decoded<ClientRequest> FromClient(MsgType type, const std::string& body) {
  return DecodeClientRequest(Header{T(type), static_cast<uint32_t>(body.size())}, B(body));
}
Decoded<Trigger> FromTriggerSocket(MsgType type, const std::string& body) {
  return DecodeTriggerSocketRequest(Header{T(type), static_cast<uint32_t>(body.size())}, B(body));
}

template <class R>
void ExpectFatal(const R& result) {
  ASSERT_FALSE(result.has_value());
  EXPECT_EQ(result.error().kind, FailureKind::kFatal) << result.error().reason;
}

template <class R>
void ExpectRefused(const R& result, const std::string& raw_ident) {
  ASSERT_FALSE(result.has_value());
  EXPECT_EQ(result.error().kind, FailureKind::kRefuse) << result.error().reason;
  EXPECT_EQ(std::string(result.error().raw_ident.data(), 32), Field(raw_ident, 32));
}

Trigger TriggerOf(const Decoded<AgentControlMessage>& result) {
  EXPECT_TRUE(result.has_value()) << result.error().reason;
  if (!result) return {};
  EXPECT_TRUE(std::holds_alternative<Trigger>(*result));
  return std::get<Trigger>(*result);
}

// ---------------------------------------------------------------- agent -> daemon

TEST(ControlFromAgent, AProtocol4TriggerDecodesEveryField) {
  auto t = TriggerOf(FromAgent(MsgType::kTriggerService4,
                               TriggerV4("work", "@dispvm:tpl", "SOCKET7", "foo.Bar+arg\0"s), 4));
  EXPECT_EQ(t.type, MsgType::kTriggerService4);
  EXPECT_EQ(t.requested_source, "work");
  EXPECT_EQ(t.target, "@dispvm:tpl");
  EXPECT_EQ(t.request_id, "SOCKET7");
  EXPECT_EQ(t.service, "foo.Bar+arg");
}

TEST(ControlFromAgent, AProtocol3TriggerDecodesUnderVersions3And4) {
  for (uint32_t version : {3u, 4u}) {
    auto t = TriggerOf(FromAgent(MsgType::kTriggerService3,
                                 TriggerV3("vm2", "SOCKET9", "qubes.Filecopy\0"s), version));
    EXPECT_EQ(t.type, MsgType::kTriggerService3);
    EXPECT_EQ(t.requested_source, "");
    EXPECT_EQ(t.target, "vm2");
    EXPECT_EQ(t.request_id, "SOCKET9");
    EXPECT_EQ(t.service, "qubes.Filecopy");
  }
}

TEST(ControlFromAgent, AProtocol2TriggerDecodesOnlyUnderVersion2) {
  std::string body = TriggerV2("qubes.Gpg+x", "vault", "SOCKET3");
  auto t = TriggerOf(FromAgent(MsgType::kTriggerService, body, 2));
  EXPECT_EQ(t.type, MsgType::kTriggerService);
  EXPECT_EQ(t.target, "vault");
  EXPECT_EQ(t.request_id, "SOCKET3");
  EXPECT_EQ(t.service, "qubes.Gpg+x");
  ExpectFatal(FromAgent(MsgType::kTriggerService, body, 3));
  ExpectFatal(FromAgent(MsgType::kTriggerService, body, 4));
}

TEST(ControlFromAgent, TriggerTypesAreGatedByVersion) {
  std::string v3 = TriggerV3("vm", "id", "a\0"s);
  std::string v4 = TriggerV4("", "vm", "id", "a\0"s);
  ExpectFatal(FromAgent(MsgType::kTriggerService3, v3, 2));
  ExpectFatal(FromAgent(MsgType::kTriggerService4, v4, 2));
  ExpectFatal(FromAgent(MsgType::kTriggerService4, v4, 3));
  EXPECT_TRUE(FromAgent(MsgType::kTriggerService4, v4, 4).has_value());
  // Versions above 4 behave as 4.
  EXPECT_TRUE(FromAgent(MsgType::kTriggerService4, v4, 7).has_value());
}

TEST(ControlFromAgent, Version2TriggerLengthMustBeExactly128) {
  std::string body = TriggerV2("a", "b", "c");
  ExpectFatal(FromAgent(MsgType::kTriggerService, body.substr(0, 127), 2));
  ExpectFatal(FromAgent(MsgType::kTriggerService, body + '\0', 2));
  ExpectFatal(FromAgent(MsgType::kTriggerService, "", 2));
}

TEST(ControlFromAgent, Version3LengthBoundsAreExclusiveBelowAndInclusiveAbove) {
  ExpectFatal(FromAgent(MsgType::kTriggerService3, "", 3));
  ExpectFatal(
      FromAgent(MsgType::kTriggerService3, TriggerV3("vm", "id", ""), 3));  // len == 96 (QSB-089)
  ExpectRefused(FromAgent(MsgType::kTriggerService3, TriggerV3("vm", "id", "\0"s), 3),
                "id");  // 97: empty name
  EXPECT_TRUE(FromAgent(MsgType::kTriggerService3, TriggerV3("vm", "id", "a\0"s), 3).has_value());
  std::string longest = std::string(64999, 'x') + '\0';
  EXPECT_TRUE(FromAgent(MsgType::kTriggerService3, TriggerV3("vm", "id", longest), 3).has_value());
  ExpectFatal(FromAgent(MsgType::kTriggerService3, TriggerV3("vm", "id", "x" + longest), 3));
}

TEST(ControlFromAgent, Version4LengthBoundsAreExclusiveBelowAndInclusiveAbove) {
  ExpectFatal(
      FromAgent(MsgType::kTriggerService4, TriggerV4("", "vm", "id", ""), 4));  // len == 160
  ExpectFatal(
      FromAgent(MsgType::kTriggerService4, TriggerV4("", "vm", "id", "").substr(0, 159), 4));
  EXPECT_TRUE(
      FromAgent(MsgType::kTriggerService4, TriggerV4("", "vm", "id", "a\0"s), 4).has_value());
  std::string longest = std::string(64999, 'x') + '\0';
  EXPECT_TRUE(
      FromAgent(MsgType::kTriggerService4, TriggerV4("", "vm", "id", longest), 4).has_value());
  ExpectFatal(FromAgent(MsgType::kTriggerService4, TriggerV4("", "vm", "id", "x" + longest), 4));
}

TEST(ControlFromAgent, ServiceNameWithoutFinalNulIsRefusedWithTheRawIdent) {
  ExpectRefused(FromAgent(MsgType::kTriggerService4, TriggerV4("", "vm", "SOCKET5", "foo"), 4),
                "SOCKET5");
  ExpectRefused(FromAgent(MsgType::kTriggerService3, TriggerV3("vm", "SOCKET5", "foo"), 3),
                "SOCKET5");
}

TEST(ControlFromAgent, ServiceNameWithAnInnerNulIsRefused) {
  ExpectRefused(FromAgent(MsgType::kTriggerService4, TriggerV4("", "vm", "S1", "foo\0bar\0"s), 4),
                "S1");
  ExpectRefused(FromAgent(MsgType::kTriggerService4, TriggerV4("", "vm", "S1", "foo\0\0"s), 4),
                "S1");
  ExpectRefused(FromAgent(MsgType::kTriggerService3, TriggerV3("vm", "S1", "\0foo\0"s), 3), "S1");
}

TEST(ControlFromAgent, EmptyOrPlusFirstServiceNamesAreRefused) {
  ExpectRefused(FromAgent(MsgType::kTriggerService4, TriggerV4("", "vm", "S1", "\0"s), 4), "S1");
  ExpectRefused(FromAgent(MsgType::kTriggerService4, TriggerV4("", "vm", "S1", "+arg\0"s), 4),
                "S1");
  ExpectRefused(FromAgent(MsgType::kTriggerService, TriggerV2("", "vm", "S1"), 2), "S1");
  ExpectRefused(FromAgent(MsgType::kTriggerService, TriggerV2("+x", "vm", "S1"), 2), "S1");
}

TEST(ControlFromAgent, ServiceNamesAreSanitizedKeepingPlus) {
  auto t = TriggerOf(FromAgent(MsgType::kTriggerService4,
                               TriggerV4("", "vm", "S1", "foo/../x+a b$c\n\xff+z\0"s), 4));
  EXPECT_EQ(t.service, "foo_.._x+a_b_c__+z");
}

TEST(ControlFromAgent, TargetAndSourceAreSanitizedKeepingAtAndColon) {
  auto t = TriggerOf(FromAgent(MsgType::kTriggerService4,
                               TriggerV4("a b/@:", "uuid:1234-ab\x01$x", "S1", "x\0"s), 4));
  EXPECT_EQ(t.requested_source, "a_b_@:");
  EXPECT_EQ(t.target, "uuid:1234-ab__x");
}

TEST(ControlFromAgent, FixedFieldsWithoutNulAreCutAtTheirLastByte) {
  std::string source(64, 's'), target(64, 't');
  auto t = TriggerOf(
      FromAgent(MsgType::kTriggerService4, source + target + Field("S1", 32) + "x\0"s, 4));
  EXPECT_EQ(t.requested_source, std::string(63, 's'));
  EXPECT_EQ(t.target, std::string(63, 't'));
  auto t3 = TriggerOf(FromAgent(MsgType::kTriggerService3, target + Field("S1", 32) + "x\0"s, 3));
  EXPECT_EQ(t3.target, std::string(63, 't'));
  auto t2 = TriggerOf(FromAgent(MsgType::kTriggerService,
                                std::string(64, 'n') + std::string(32, 't') + Field("S1", 32), 2));
  EXPECT_EQ(t2.service, std::string(63, 'n'));
  EXPECT_EQ(t2.target, std::string(31, 't'));
}

TEST(ControlFromAgent, InvalidRequestIdsAreRefusedNotMangled) {
  ExpectRefused(FromAgent(MsgType::kTriggerService4, TriggerV4("", "vm", "SOCK/7", "x\0"s), 4),
                "SOCK/7");
  ExpectRefused(FromAgent(MsgType::kTriggerService4, TriggerV4("", "vm", "a:b", "x\0"s), 4), "a:b");
  // Garbage after the NUL.
  std::string id = "ok\0junk"s;
  ExpectRefused(FromAgent(MsgType::kTriggerService4, TriggerV4("", "vm", id, "x\0"s), 4), id);
  // No NUL at all.
  std::string full(32, 'A');
  ExpectRefused(FromAgent(MsgType::kTriggerService3, TriggerV3("vm", full, "x\0"s), 3), full);
  ExpectRefused(FromAgent(MsgType::kTriggerService, TriggerV2("x", "vm", full), 2), full);
}

TEST(ControlFromAgent, RequestIdsWithSpacesDotsAndEmptyAreValid) {
  EXPECT_EQ(
      TriggerOf(FromAgent(MsgType::kTriggerService4, TriggerV4("", "vm", "a b.c-d_9", "x\0"s), 4))
          .request_id,
      "a b.c-d_9");
  EXPECT_EQ(TriggerOf(FromAgent(MsgType::kTriggerService4, TriggerV4("", "vm", "", "x\0"s), 4))
                .request_id,
            "");
  std::string longest(31, 'i');
  EXPECT_EQ(TriggerOf(FromAgent(MsgType::kTriggerService4, TriggerV4("", "vm", longest, "x\0"s), 4))
                .request_id,
            longest);
}

TEST(ControlFromAgent, ConnectionTerminatedNeedsEightBytesAndADataPort) {
  auto ok = FromAgent(MsgType::kConnectionTerminated, U32(5) + U32(513), 3);
  ASSERT_TRUE(ok.has_value());
  EXPECT_EQ(std::get<ConnectionTerminated>(*ok), (ConnectionTerminated{5, 513}));
  EXPECT_TRUE(FromAgent(MsgType::kConnectionTerminated, U32(5) + U32(768), 2).has_value());
  ExpectFatal(FromAgent(MsgType::kConnectionTerminated, U32(5) + U32(512), 4));
  ExpectFatal(FromAgent(MsgType::kConnectionTerminated, U32(5) + U32(769), 4));
  ExpectFatal(FromAgent(MsgType::kConnectionTerminated, U32(5) + U32(0), 4));
  ExpectFatal(FromAgent(MsgType::kConnectionTerminated, U32(5) + U32(513).substr(0, 3), 4));
  ExpectFatal(FromAgent(MsgType::kConnectionTerminated, U32(5) + U32(513) + "\0"s, 4));
  ExpectFatal(FromAgent(MsgType::kConnectionTerminated, "", 4));
}

TEST(ControlFromAgent, OtherTypesAreFatal) {
  for (MsgType type : {MsgType::kHello, MsgType::kExecCmdline, MsgType::kJustExec,
                       MsgType::kServiceConnect, MsgType::kServiceRefused, MsgType::kDataStdin,
                       MsgType::kDataStdout, MsgType::kDataStderr, MsgType::kDataExitCode})
    ExpectFatal(FromAgent(type, U32(4), 4));
  ExpectFatal(DecodeControlFromAgent(Header{0x214, 0}, {}, 4));
  ExpectFatal(DecodeControlFromAgent(Header{0xffffffff, 0}, {}, 4));
}

TEST(ControlFromAgent, ABodyThatDoesNotMatchTheHeaderIsFatal) {
  std::string body = U32(1) + U32(513);
  ExpectFatal(DecodeControlFromAgent(Header{T(MsgType::kConnectionTerminated), 9}, B(body), 4));
  ExpectFatal(DecodeControlFromAgent(Header{T(MsgType::kConnectionTerminated), 7}, B(body), 4));
}

TEST(ControlFromAgent, FailuresConvertToErrorKinds) {
  auto fatal = FromAgent(MsgType::kHello, U32(4), 4);
  EXPECT_EQ(fatal.error().ToError().kind, ErrorKind::kMalformed);
  auto refused = FromAgent(MsgType::kTriggerService4, TriggerV4("", "vm", "S1", "\0"s), 4);
  EXPECT_EQ(refused.error().ToError().kind, ErrorKind::kRefused);
}

TEST(ControlFromAgent, KeywordAndUuidTargetsPassSanitizingUnchanged) {
  for (std::string target : {"@default", "@adminvm", "@dispvm", "@dispvm:tpl", "@dispvm:uuid:ab-12",
                             "uuid:00000000-0000-0000-0000-000000000000", "dom0", "my-vm_2.x"}) {
    auto t =
        TriggerOf(FromAgent(MsgType::kTriggerService4, TriggerV4(target, target, "S1", "x\0"s), 4));
    EXPECT_EQ(t.target, target);
    EXPECT_EQ(t.requested_source, target);
  }
}

TEST(ControlFromAgent, Version3BodiesShorterThanTheFixedPartAreFatal) {
  std::string fixed = TriggerV3("vm", "id", "");
  for (size_t len : {0u, 1u, 8u, 95u, 96u})
    ExpectFatal(FromAgent(MsgType::kTriggerService3, fixed.substr(0, len), 3));
}

TEST(ControlFromAgent, EveryTruncationOfAValidTriggerIsRejected) {
  std::string body = TriggerV4("src", "vm", "SOCKET1", "qubes.X+y\0"s);
  ASSERT_TRUE(FromAgent(MsgType::kTriggerService4, body, 4).has_value());
  for (size_t len = 0; len < body.size(); ++len) {
    auto r = FromAgent(MsgType::kTriggerService4, body.substr(0, len), 4);
    EXPECT_FALSE(r.has_value()) << "length " << len;
    // A framer that delivered fewer bytes than announced: always fatal.
    std::string cut = body.substr(0, len);
    ExpectFatal(DecodeControlFromAgent(
        Header{T(MsgType::kTriggerService4), static_cast<uint32_t>(body.size())}, B(cut), 4));
  }
}

// ---------------------------------------------------------------- daemon -> agent

TEST(ControlFromDaemon, ExecRequestsDecode) {
  for (MsgType type : {MsgType::kExecCmdline, MsgType::kJustExec}) {
    auto r = FromDaemon(type, U32(0) + U32(514) + "user:QUBESRPC a+b vm1\0"s);
    ASSERT_TRUE(r.has_value()) << r.error().reason;
    const auto& exec = std::get<ExecRequest>(*r);
    EXPECT_EQ(exec.type, static_cast<ExecType>(T(type)));
    EXPECT_EQ(exec.connect_domain, 0u);
    EXPECT_EQ(exec.connect_port, 514u);
    EXPECT_EQ(exec.command, "user:QUBESRPC a+b vm1");
  }
}

TEST(ControlFromDaemon, ExecRequestLengthAndTerminatorAreChecked) {
  std::string params = U32(0) + U32(514);
  ExpectFatal(FromDaemon(MsgType::kExecCmdline, ""));
  ExpectFatal(FromDaemon(MsgType::kExecCmdline, params));         // len == 8
  auto empty = FromDaemon(MsgType::kExecCmdline, params + '\0');  // len == 9
  ASSERT_TRUE(empty.has_value());
  EXPECT_EQ(std::get<ExecRequest>(*empty).command, "");
  ExpectFatal(FromDaemon(MsgType::kExecCmdline, params + "user:ls"));       // no NUL
  ExpectFatal(FromDaemon(MsgType::kExecCmdline, params + "user\0:ls\0"s));  // inner NUL
  std::string at_limit(kMaxControlFromDaemonBody - 9, 'x');
  EXPECT_TRUE(FromDaemon(MsgType::kExecCmdline, params + at_limit + '\0').has_value());
  ExpectFatal(FromDaemon(MsgType::kExecCmdline, params + at_limit + "x\0"s));
}

// dom0 allocated the port; the agent takes whatever it names.
TEST(ControlFromDaemon, ExecRequestPortIsTakenAsGiven) {
  for (uint32_t port : {0u, 512u, 768u, 769u, 1024u, 0xffffffffu}) {
    auto r = FromDaemon(MsgType::kJustExec, U32(3) + U32(port) + "u:x\0"s);
    ASSERT_TRUE(r.has_value()) << port;
    EXPECT_EQ(std::get<ExecRequest>(*r).connect_port, port);
  }
}

TEST(ControlFromDaemon, ServiceConnectNeedsAnIdentFieldOfAtMost32BytesWithItsNul) {
  auto r = FromDaemon(MsgType::kServiceConnect, U32(7) + U32(515) + Field("SOCKET12", 32));
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(std::get<ServiceConnect>(*r), (ServiceConnect{7, 515, "SOCKET12"}));
  auto short_field = FromDaemon(MsgType::kServiceConnect, U32(7) + U32(2000) + "SOCKET12\0"s);
  ASSERT_TRUE(short_field.has_value());
  EXPECT_EQ(std::get<ServiceConnect>(*short_field), (ServiceConnect{7, 2000, "SOCKET12", 9}));
  ExpectFatal(FromDaemon(MsgType::kServiceConnect, U32(7) + U32(515) + "SOCKET12"s));
  ExpectFatal(FromDaemon(MsgType::kServiceConnect, U32(7) + U32(515)));
  ExpectFatal(FromDaemon(MsgType::kServiceConnect, U32(7) + U32(515) + Field("SOCKET12", 33)));
  ExpectFatal(FromDaemon(MsgType::kServiceConnect, U32(7) + U32(515) + std::string(32, 'A')));
  ExpectFatal(FromDaemon(MsgType::kServiceConnect, U32(7) + U32(515) + Field("SOCK\n", 32)));
  ExpectFatal(FromDaemon(MsgType::kServiceConnect, U32(7) + U32(515) + "SOCKET12\0x"s));
}

TEST(ControlFromDaemon, ServiceRefusedNeedsThirtyTwoBytesAndAValidIdent) {
  auto r = FromDaemon(MsgType::kServiceRefused, Field("SOCKET4", 32));
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(std::get<ServiceRefused>(*r).ident, "SOCKET4");
  ExpectFatal(FromDaemon(MsgType::kServiceRefused, Field("SOCKET4", 31)));
  ExpectFatal(FromDaemon(MsgType::kServiceRefused, Field("SOCKET4", 33)));
  ExpectFatal(FromDaemon(MsgType::kServiceRefused, "SOCKET4\0x"s + std::string(23, '\0')));
}

TEST(ControlFromDaemon, AgentOnlyAndDataTypesAreFatal) {
  for (MsgType type : {MsgType::kHello, MsgType::kTriggerService, MsgType::kTriggerService3,
                       MsgType::kTriggerService4, MsgType::kConnectionTerminated,
                       MsgType::kDataStdin, MsgType::kDataExitCode})
    ExpectFatal(FromDaemon(type, U32(4) + U32(514)));
  ExpectFatal(DecodeControlFromDaemon(Header{0x1234, 0}, {}, 4));
}

// ---------------------------------------------------------------- client -> daemon socket

TEST(ClientSocket, ExecRequestWithPortZeroAsksForAllocation) {
  auto r = FromClient(MsgType::kExecCmdline, U32(0) + U32(0) + "DEFAULT:QUBESRPC x+ vm\0"s);
  ASSERT_TRUE(r.has_value());
  const auto& exec = std::get<ExecRequest>(*r);
  EXPECT_EQ(exec.connect_port, 0u);
  EXPECT_EQ(exec.command, "DEFAULT:QUBESRPC x+ vm");
}

TEST(ClientSocket, LengthMustBeAbove8AndAtMost65535) {
  std::string params = U32(0) + U32(0);
  ExpectFatal(FromClient(MsgType::kExecCmdline, params));
  EXPECT_TRUE(FromClient(MsgType::kExecCmdline, params + '\0').has_value());
  std::string command(65535 - 9, 'c');
  EXPECT_TRUE(FromClient(MsgType::kJustExec, params + command + '\0').has_value());
  ExpectFatal(FromClient(MsgType::kJustExec, params + command + "c\0"s));
}

TEST(ClientSocket, LastByteMustBeNulAndNoInnerNul) {
  std::string params = U32(0) + U32(0);
  ExpectFatal(FromClient(MsgType::kExecCmdline, params + "u:ls"));
  ExpectFatal(FromClient(MsgType::kExecCmdline, params + "u:l\0s\0"s));
}

TEST(ClientSocket, NonZeroPortsMustBeDataPorts) {
  EXPECT_TRUE(FromClient(MsgType::kExecCmdline, U32(0) + U32(513) + "u:x\0"s).has_value());
  ExpectFatal(FromClient(MsgType::kExecCmdline, U32(0) + U32(512) + "u:x\0"s));
  EXPECT_TRUE(
      FromClient(MsgType::kServiceConnect, U32(3) + U32(600) + Field("SOCKET1", 32)).has_value());
  ExpectFatal(FromClient(MsgType::kServiceConnect, U32(3) + U32(769) + Field("SOCKET1", 32)));
}

TEST(ClientSocket, ServiceConnectDecodes) {
  auto r = FromClient(MsgType::kServiceConnect, U32(0) + U32(0) + Field("SOCKET1", 32));
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(std::get<ServiceConnect>(*r), (ServiceConnect{0, 0, "SOCKET1"}));
  // A short ident field (text + NUL) is accepted and remembered as short.
  auto short_field = FromClient(MsgType::kServiceConnect, U32(4) + U32(513) + "SOCKET1\0"s);
  ASSERT_TRUE(short_field.has_value());
  EXPECT_EQ(std::get<ServiceConnect>(*short_field), (ServiceConnect{4, 513, "SOCKET1", 8}));
  ExpectFatal(FromClient(MsgType::kServiceConnect, U32(0) + U32(0) + "SOCKET1"s));
}

TEST(ClientSocket, AShortIdentFieldEncodesBackToTheSameBytes) {
  auto frame = EncodeServiceConnect(ServiceConnect{4, 513, "SOCKET11", 9});
  ASSERT_TRUE(frame.has_value());
  EXPECT_EQ(frame->size(), kHeaderSize + 8 + 9);
  EXPECT_FALSE(EncodeServiceConnect(ServiceConnect{4, 513, "SOCKET11", 8}).has_value());
  EXPECT_FALSE(EncodeServiceConnect(ServiceConnect{4, 513, "SOCKET11", 33}).has_value());
}

TEST(ClientSocket, OtherTypesAreFatal) {
  for (MsgType type : {MsgType::kHello, MsgType::kServiceRefused, MsgType::kTriggerService4,
                       MsgType::kConnectionTerminated, MsgType::kDataStdin})
    ExpectFatal(FromClient(type, U32(0) + U32(0) + Field("x", 32)));
}

TEST(ClientSocket, TheDaemonReplyMustEchoTheTypeWithEightBytes) {
  std::string body = U32(42) + U32(514);
  auto ok = DecodeClientReply(Header{T(MsgType::kExecCmdline), 8}, B(body), MsgType::kExecCmdline);
  ASSERT_TRUE(ok.has_value());
  EXPECT_EQ(*ok, (ExecParams{42, 514}));
  EXPECT_FALSE(DecodeClientReply(Header{T(MsgType::kJustExec), 8}, B(body), MsgType::kExecCmdline));
  std::string longer = body + '\0';
  EXPECT_FALSE(
      DecodeClientReply(Header{T(MsgType::kExecCmdline), 9}, B(longer), MsgType::kExecCmdline));
  // The daemon allocated the port; the client does not second-guess it.
  std::string high_port = U32(42) + U32(1024);
  auto high =
      DecodeClientReply(Header{T(MsgType::kExecCmdline), 8}, B(high_port), MsgType::kExecCmdline);
  ASSERT_TRUE(high.has_value());
  EXPECT_EQ(high->connect_port, 1024u);
}

// ---------------------------------------------------------------- client-vm -> agent trigger
// socket

TEST(TriggerSocket, AcceptsOnlyTrigger4AndIgnoresTheRequestId) {
  auto r =
      FromTriggerSocket(MsgType::kTriggerService4, TriggerV4("", "$default", "SOCKET", "a.B+c\0"s));
  ASSERT_TRUE(r.has_value()) << r.error().reason;
  EXPECT_EQ(r->target, "_default");
  EXPECT_EQ(r->request_id, "");
  EXPECT_EQ(r->service, "a.B+c");
  // The id is not checked here: the agent overwrites it.
  EXPECT_TRUE(FromTriggerSocket(MsgType::kTriggerService4,
                                TriggerV4("", "vm", std::string(32, '/'), "x\0"s)));
  ExpectFatal(FromTriggerSocket(MsgType::kTriggerService3, TriggerV3("vm", "SOCKET", "x\0"s)));
  ExpectFatal(FromTriggerSocket(MsgType::kTriggerService, TriggerV2("x", "vm", "SOCKET")));
}

TEST(TriggerSocket, LengthBoundsAre160ExclusiveAnd65160Inclusive) {
  ExpectFatal(FromTriggerSocket(MsgType::kTriggerService4, TriggerV4("", "vm", "SOCKET", "")));
  std::string longest = std::string(64999, 'x') + '\0';
  EXPECT_TRUE(FromTriggerSocket(MsgType::kTriggerService4, TriggerV4("", "vm", "SOCKET", longest)));
  ExpectFatal(
      FromTriggerSocket(MsgType::kTriggerService4, TriggerV4("", "vm", "SOCKET", "x" + longest)));
}

TEST(TriggerSocket, BadServiceNamesFail) {
  EXPECT_FALSE(FromTriggerSocket(MsgType::kTriggerService4, TriggerV4("", "vm", "SOCKET", "x")));
  EXPECT_FALSE(
      FromTriggerSocket(MsgType::kTriggerService4, TriggerV4("", "vm", "SOCKET", "+x\0"s)));
  EXPECT_FALSE(
      FromTriggerSocket(MsgType::kTriggerService4, TriggerV4("", "vm", "SOCKET", "x\0y\0"s)));
}

// ---------------------------------------------------------------- agent -> fork server

std::string CmdInfoBytes(uint32_t type, uint32_t len, const std::string& command) {
  return U32(type) + U32(3) + U32(600) + U32(len) + command;
}

TEST(ForkServer, ARequestDecodes) {
  std::string bytes = CmdInfoBytes(T(MsgType::kJustExec), 18, "QUBESRPC a+b vm1\0"s + "");
  bytes = CmdInfoBytes(T(MsgType::kJustExec), 17, "QUBESRPC a+b vm1\0"s);
  auto r = DecodeForkServerRequest(B(bytes));
  ASSERT_TRUE(r.has_value()) << r.error().reason;
  EXPECT_EQ(*r, (CmdInfo{ExecType::kJustExec, 3, 600, "QUBESRPC a+b vm1"}));
}

TEST(ForkServer, BadRequestsAreFatal) {
  ExpectFatal(DecodeForkServerRequest(B(CmdInfoBytes(0x200, 0, ""))));
  ExpectFatal(DecodeForkServerRequest(B(CmdInfoBytes(0x200, 1, "\0"s))));     // empty command
  ExpectFatal(DecodeForkServerRequest(B(CmdInfoBytes(0x200, 2, "x"))));       // size mismatch
  ExpectFatal(DecodeForkServerRequest(B(CmdInfoBytes(0x200, 2, "xy"))));      // no NUL
  ExpectFatal(DecodeForkServerRequest(B(CmdInfoBytes(0x200, 3, "x\0\0"s))));  // inner NUL
  ExpectFatal(DecodeForkServerRequest(B(CmdInfoBytes(0x202, 2, "x\0"s))));    // bad type
  ExpectFatal(DecodeForkServerRequest(B(CmdInfoBytes(0x200, 2, "x\0"s).substr(0, 15))));
  std::string longest(kMaxForkServerCommand - 1, 'c');
  EXPECT_TRUE(DecodeForkServerRequest(
      B(CmdInfoBytes(0x200, static_cast<uint32_t>(longest.size() + 1), longest + '\0'))));
  ExpectFatal(DecodeForkServerRequest(
      B(CmdInfoBytes(0x200, static_cast<uint32_t>(longest.size() + 2), longest + "c\0"s))));
}

TEST(ForkServer, TheAnnouncedLengthIsCheckedBeforeReadingTheCommand) {
  std::string header = CmdInfoBytes(0x200, 0xffffffff, "");
  auto len = ForkServerCommandLength(
      std::span<const std::byte, kCmdInfoSize>(B(header).data(), kCmdInfoSize));
  EXPECT_FALSE(len.has_value());
  header = CmdInfoBytes(0x200, 10, "");
  len = ForkServerCommandLength(
      std::span<const std::byte, kCmdInfoSize>(B(header).data(), kCmdInfoSize));
  ASSERT_TRUE(len.has_value());
  EXPECT_EQ(*len, 10u);
}

// ---------------------------------------------------------------- hello

TEST(Hello, DecodesOnlyTypeHelloWithFourBytes) {
  std::string body = U32(3);
  auto ok = DecodeHello(Header{T(MsgType::kHello), 4}, B(body));
  ASSERT_TRUE(ok.has_value());
  EXPECT_EQ(ok->version, 3u);
  EXPECT_FALSE(DecodeHello(Header{T(MsgType::kExecCmdline), 4}, B(body)));
  EXPECT_FALSE(DecodeHello(Header{T(MsgType::kHello), 3}, B(body).first(3)));
  std::string five = body + '\0';
  EXPECT_FALSE(DecodeHello(Header{T(MsgType::kHello), 5}, B(five)));
}

TEST(Handshake, TheDaemonEchoesTheAgentVersionButNegotiatesTheMinimum) {
  auto r = NegotiateControlAsDaemon(5);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->negotiated, 4u);
  EXPECT_EQ(r->reply_version, 5u);
  r = NegotiateControlAsDaemon(3);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->negotiated, 3u);
  EXPECT_EQ(r->reply_version, 3u);
  r = NegotiateControlAsDaemon(2);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->negotiated, 2u);
  EXPECT_FALSE(NegotiateControlAsDaemon(1));
  EXPECT_FALSE(NegotiateControlAsDaemon(0));
}

TEST(Handshake, AgentAndDataSidesTakeTheMinimumAndNeedAtLeast2) {
  EXPECT_EQ(*NegotiateControlAsAgent(0xffffffff), 4u);
  EXPECT_EQ(*NegotiateControlAsAgent(3), 3u);
  EXPECT_FALSE(NegotiateControlAsAgent(1));
  EXPECT_EQ(*NegotiateData(2), 2u);
  EXPECT_EQ(*NegotiateData(4, 3), 3u);
  EXPECT_FALSE(NegotiateData(0));
}

TEST(Handshake, TheClientSocketNeedsAtLeast3) {
  EXPECT_EQ(*NegotiateClientSocket(3), 3u);
  EXPECT_EQ(*NegotiateClientSocket(4), 3u);
  EXPECT_FALSE(NegotiateClientSocket(2));
  EXPECT_FALSE(NegotiateClientSocket(0));
}

// ---------------------------------------------------------------- encoders

TEST(Encode, HelloIsTwelveLittleEndianBytes) {
  EXPECT_EQ(S(EncodeHello(4)), "\x00\x03\x00\x00\x04\x00\x00\x00\x04\x00\x00\x00"s);
}

TEST(Encode, ExecParamsAndClientRepliesHaveTheFixedLayout) {
  EXPECT_EQ(S(EncodeExecParams({0x2a, 0x202})), "\x2a\0\0\0\x02\x02\0\0"s);
  EXPECT_EQ(S(EncodeClientReply(MsgType::kJustExec, {1, 513})),
            U32(0x201) + U32(8) + U32(1) + U32(513));
  Bytes raw = EncodeExecParams({9, 700});
  EXPECT_EQ(DecodeExecParams(std::span<const std::byte, 8>(raw.data(), 8)), (ExecParams{9, 700}));
}

TEST(Encode, ExecRequestRoundTrips) {
  ExecRequest request{ExecType::kJustExec, 3, 514, "user:QUBESRPC a+b vm"};
  auto frame = EncodeExecRequest(request);
  ASSERT_TRUE(frame.has_value());
  EXPECT_EQ(S(*frame), U32(0x201) + U32(8 + 21) + U32(3) + U32(514) + "user:QUBESRPC a+b vm\0"s);
  auto header = Header::Decode(std::span<const std::byte, 8>(frame->data(), 8));
  auto back = DecodeControlFromDaemon(header, std::span(*frame).subspan(8), 4);
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(std::get<ExecRequest>(*back), request);
  EXPECT_FALSE(EncodeExecRequest({ExecType::kExecCmdline, 0, 514, "a\0b"s}));
  EXPECT_FALSE(EncodeExecRequest(
      {ExecType::kExecCmdline, 0, 514, std::string(kMaxControlFromDaemonBody, 'x')}));
}

TEST(Encode, ServiceConnectAndRefusedZeroPadTheIdent) {
  auto connect = EncodeServiceConnect({5, 600, "SOCKET3"});
  ASSERT_TRUE(connect.has_value());
  EXPECT_EQ(S(*connect), U32(0x202) + U32(40) + U32(5) + U32(600) + Field("SOCKET3", 32));
  auto refused = EncodeServiceRefused("SOCKET3");
  ASSERT_TRUE(refused.has_value());
  EXPECT_EQ(S(*refused), U32(0x203) + U32(32) + Field("SOCKET3", 32));
  EXPECT_FALSE(EncodeServiceConnect({5, 600, std::string(32, 'a')}));
  EXPECT_FALSE(EncodeServiceRefused("bad/id"));
  RawIdent raw{};
  raw.fill('/');
  EXPECT_EQ(S(EncodeServiceRefusedRaw(raw)), U32(0x203) + U32(32) + std::string(32, '/'));
}

TEST(Encode, TriggersOfEachVersionRoundTrip) {
  Trigger v4{MsgType::kTriggerService4, "src", "@dispvm:t", "SOCKET", "a.B+c"};
  Trigger v3{MsgType::kTriggerService3, "", "vm", "id 1", "x"};
  Trigger v2{MsgType::kTriggerService, "", "vm", "id", "qubes.X+y"};
  for (auto [t, version] : {std::pair{v4, 4u}, std::pair{v3, 3u}, std::pair{v2, 2u}}) {
    auto frame = EncodeTrigger(t);
    ASSERT_TRUE(frame.has_value());
    auto header = Header::Decode(std::span<const std::byte, 8>(frame->data(), 8));
    auto back = DecodeControlFromAgent(header, std::span(*frame).subspan(8), version);
    ASSERT_TRUE(back.has_value()) << back.error().reason;
    EXPECT_EQ(std::get<Trigger>(*back), t);
  }
  EXPECT_EQ(S(*EncodeTrigger(v4)),
            U32(0x213) + U32(166) + TriggerV4("src", "@dispvm:t", "SOCKET", "a.B+c\0"s));
  EXPECT_EQ(S(*EncodeTrigger(v2)), U32(0x210) + U32(128) + TriggerV2("qubes.X+y", "vm", "id"));
}

TEST(Encode, TriggerFieldsThatDoNotFitAreErrors) {
  EXPECT_FALSE(EncodeTrigger({MsgType::kTriggerService4, std::string(64, 's'), "vm", "id", "x"}));
  EXPECT_TRUE(EncodeTrigger(
      {MsgType::kTriggerService4, std::string(63, 's'), std::string(63, 't'), "id", "x"}));
  EXPECT_FALSE(EncodeTrigger({MsgType::kTriggerService3, "src", "vm", "id", "x"}));
  EXPECT_FALSE(EncodeTrigger({MsgType::kTriggerService, "", std::string(32, 't'), "id", "x"}));
  EXPECT_FALSE(EncodeTrigger({MsgType::kTriggerService, "", "vm", "id", std::string(64, 'x')}));
  EXPECT_FALSE(EncodeTrigger({MsgType::kTriggerService4, "", "vm", "id", std::string(65000, 'x')}));
  EXPECT_TRUE(EncodeTrigger({MsgType::kTriggerService4, "", "vm", "id", std::string(64999, 'x')}));
  EXPECT_FALSE(EncodeTrigger({MsgType::kTriggerService4, "", "v\0m"s, "id", "x"}));
  EXPECT_FALSE(EncodeTrigger({MsgType::kTriggerService4, "", "vm", "i/d", "x"}));
  EXPECT_FALSE(EncodeTrigger({MsgType::kHello, "", "vm", "id", "x"}));
}

TEST(Encode, ConnectionTerminatedAndCmdInfoHaveTheFixedLayout) {
  EXPECT_EQ(S(EncodeConnectionTerminated({4, 520})), U32(0x211) + U32(8) + U32(4) + U32(520));
  auto info = EncodeCmdInfo({ExecType::kExecCmdline, 4, 520, "QUBESRPC a+ vm"});
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(S(*info), U32(0x200) + U32(4) + U32(520) + U32(15) + "QUBESRPC a+ vm\0"s);
  auto back = DecodeForkServerRequest(*info);
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->command, "QUBESRPC a+ vm");
  EXPECT_FALSE(EncodeCmdInfo({ExecType::kExecCmdline, 4, 520, ""}));
  EXPECT_FALSE(EncodeCmdInfo({ExecType::kExecCmdline, 4, 520, "a\0b"s}));
}

}  // namespace
}  // namespace qrexec::proto
