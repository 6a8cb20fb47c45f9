// Every control message of qrexec protocol versions 2-4 as a typed value,
// with one decoder per (channel, direction) and one encoder per message
// (qrexec-protocol.md §2.3-2.6, §2.9, §2.10, §3).
//
// Decoders are pure functions over bytes: they take the raw header and body
// exactly as received (`untrusted_`), check everything once (type allowed on
// this channel and protocol version, length, NUL terminators, no inner NULs,
// name sanitising, request ids) and return either a trusted typed value or a
// DecodeFailure. Nothing above this layer looks at message bytes.
//
// A DecodeFailure has one of two kinds:
//  * kFatal  - the peer broke the protocol; the receiver ends that channel
//              (the daemon its agent connection, the agent its daemon
//              connection, a socket server that one client). `reason` is a
//              short human text, already safe to log (no peer bytes in it).
//  * kRefuse - only for trigger requests (agent -> daemon): the framing was
//              fine but the request id or the service name is invalid. The
//              daemon answers MSG_SERVICE_REFUSED carrying `raw_ident`, the
//              32 request-id bytes exactly as the agent sent them (§2.6), and
//              keeps the channel.
// Where the reference implementation only logs or silently truncates a
// malformed field, these decoders are stricter (documented per decoder).
//
// Encoders produce complete wire frames (8-byte header + body) with fixed
// fields zero-padded. Encoders whose input could not be represented (a name
// too long for its field, an inner NUL, an invalid request id) return a
// kMalformed Error instead of truncating.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "base/limits.h"
#include "base/result.h"
#include "proto/wire.h"

namespace qrexec::proto {

using Bytes = std::vector<std::byte>;

// The request-id field (service_params.ident) exactly as on the wire.
using RawIdent = std::array<char, kServiceParamsSize>;

// ---------------------------------------------------------------------------
// Per-channel maximum body sizes (for FrameReader / ReadMessage). Each one is
// the largest body any legal message on that channel can have.

// Agent -> daemon control: MSG_TRIGGER_SERVICE4 with a 65000-byte name.
inline constexpr size_t kMaxControlFromAgentBody = kTriggerParams4Size + limits::kMaxServiceNameLen;
// Daemon -> agent control: a client command (<= 65535) whose "DEFAULT:"
// prefix the daemon replaced by a user name (bounded here at 1 KiB extra).
inline constexpr size_t kMaxControlFromDaemonBody = limits::kMaxCommandBody + 1024;
// Client -> daemon socket request (MAX_QREXEC_CMD_LEN).
inline constexpr size_t kMaxClientRequestBody = limits::kMaxCommandBody;
// qrexec-client-vm -> agent trigger socket.
inline constexpr size_t kMaxTriggerSocketBody = kTriggerParams4Size + limits::kMaxServiceNameLen;
// Agent -> fork server: command (with its NUL) after the 16-byte header.
inline constexpr size_t kMaxForkServerCommand = kMaxControlFromDaemonBody;

// ---------------------------------------------------------------------------
// Typed messages. All strings are without their wire NUL terminator.

struct Hello {
  uint32_t version = 0;
};

// The 8-byte exec_params: a data-channel peer and port. Also the whole raw
// reply on the trigger socket and the body of daemon replies on the client
// socket.
struct ExecParams {
  uint32_t connect_domain = 0;
  uint32_t connect_port = 0;
  bool operator==(const ExecParams&) const = default;
};

enum class ExecType : uint32_t {
  kExecCmdline = static_cast<uint32_t>(MsgType::kExecCmdline),
  kJustExec = static_cast<uint32_t>(MsgType::kJustExec),
};

// MSG_EXEC_CMDLINE / MSG_JUST_EXEC (daemon -> agent, client -> daemon).
// `command` contains no NUL byte (it may be empty; parsing it is exec's job).
struct ExecRequest {
  ExecType type = ExecType::kExecCmdline;
  uint32_t connect_domain = 0;
  uint32_t connect_port = 0;
  std::string command;
  bool operator==(const ExecRequest&) const = default;
};

// MSG_SERVICE_CONNECT. `ident` is a valid request id (names::IsValidRequestIdText,
// at most 31 bytes). `ident_field_len` is how many bytes the ident field takes
// on the wire: normally the full 32-byte service_params, but a client may send
// a shorter field (just the text and its NUL, e.g. 9 bytes for "SOCKET11");
// the daemon relays such a message to the agent byte for byte, as the
// reference does. Always ident.size() < ident_field_len <= 32.
struct ServiceConnect {
  uint32_t connect_domain = 0;
  uint32_t connect_port = 0;
  std::string ident;
  size_t ident_field_len = kServiceParamsSize;
  bool operator==(const ServiceConnect&) const = default;
};

// MSG_SERVICE_REFUSED (daemon -> agent). Built by the daemon from the raw
// ident of a trigger; decoded by the agent with the same rules as above.
struct ServiceRefused {
  std::string ident;
  bool operator==(const ServiceRefused&) const = default;
};

// MSG_TRIGGER_SERVICE (v2, 0x210), MSG_TRIGGER_SERVICE3 (0x212) or
// MSG_TRIGGER_SERVICE4 (0x213). After decoding:
//  * `requested_source` (v4 only, else empty) and `target` are the fixed
//    fields cut at their first NUL (the last byte is forced to NUL, i.e. at
//    most 63 bytes, 31 for the v2 target) and sanitized with
//    names::Sanitize(..., "@:"): bad bytes became '_'.
//  * `request_id` is valid (see ServiceConnect::ident).
//  * `service` is "NAME[+ARG]", non-empty, not starting with '+', sanitized
//    with names::Sanitize(..., "+").
struct Trigger {
  MsgType type = MsgType::kTriggerService4;  // which of the three layouts
  std::string requested_source;
  std::string target;
  std::string request_id;
  std::string service;
  bool operator==(const Trigger&) const = default;
};

// MSG_CONNECTION_TERMINATED (agent -> daemon). Port is in 513..768 (the
// daemon allocated it, so anything else is a lie from the VM).
struct ConnectionTerminated {
  uint32_t connect_domain = 0;
  uint32_t connect_port = 0;
  bool operator==(const ConnectionTerminated&) const = default;
};

// The agent -> fork server request (qrexec_cmd_info + command). `command`
// is the command without the "user:" prefix, non-empty, without NUL.
struct CmdInfo {
  ExecType type = ExecType::kExecCmdline;
  uint32_t connect_domain = 0;
  uint32_t connect_port = 0;
  std::string command;
  bool operator==(const CmdInfo&) const = default;
};

using AgentControlMessage = std::variant<Trigger, ConnectionTerminated>;
using DaemonControlMessage = std::variant<ExecRequest, ServiceConnect, ServiceRefused>;
using ClientRequest = std::variant<ExecRequest, ServiceConnect>;

// ---------------------------------------------------------------------------
// Decode results.

enum class FailureKind { kFatal, kRefuse };

struct DecodeFailure {
  FailureKind kind = FailureKind::kFatal;
  std::string reason;    // constant text, safe to log
  RawIdent raw_ident{};  // kRefuse only: echo in MSG_SERVICE_REFUSED

  // kFatal -> ErrorKind::kMalformed, kRefuse -> ErrorKind::kRefused.
  Error ToError() const;
};

template <class T>
using Decoded = tl::expected<T, DecodeFailure>;

// Each decoder requires untrusted_body.size() == untrusted_header.untrusted_len
// (what a framer delivers); any mismatch is kFatal. `version` is the
// negotiated control-channel version (>= 2; values above 4 act as 4).

// Daemon receiving on the control vchan (§2.6 first table):
//  * 0x210 only under v2, len == 128.
//  * 0x212 under v3 and v4, 96 < len <= 96+65000.
//  * 0x213 under v4 only, 160 < len <= 160+65000.
//  * 0x211 len == 8, port 513..768.
//  * anything else (HELLO, unknown types, wrong-version triggers): kFatal.
// Trigger field problems: request id with a byte outside [0-9A-Za-z_.- ],
// without a NUL, or with non-NUL after its NUL; service name not ending with
// exactly one NUL at the last body byte (v3/v4), empty, or starting with
// '+' -> kRefuse with the raw ident. (Stricter than the reference: the v2
// service name must also be non-empty and not start with '+'.)
Decoded<AgentControlMessage> DecodeControlFromAgent(const Header& untrusted_header,
                                                    std::span<const std::byte> untrusted_body,
                                                    uint32_t version);

// Agent receiving on the control vchan (§2.6 second table). Every failure is
// kFatal. The port is not checked: dom0 is trusted and the daemon, which
// allocates ports, is the one that bounds them (like the reference, any
// port is used as given). Stricter than the reference:
//  * EXEC_CMDLINE/JUST_EXEC: 8 < len <= kMaxControlFromDaemonBody, the last
//    byte must be NUL (not forced) and no other NUL.
//  * SERVICE_CONNECT: 8 < len <= 40, a valid ident whose NUL lies inside
//    the body, only NULs after it.
//  * SERVICE_REFUSED: len == 32, valid ident.
Decoded<DaemonControlMessage> DecodeControlFromDaemon(const Header& untrusted_header,
                                                      std::span<const std::byte> untrusted_body,
                                                      uint32_t version);

// Daemon receiving a client request on its Unix socket, after the hellos
// (§2.9). Every failure is kFatal (drop that client):
//  * EXEC_CMDLINE/JUST_EXEC: 8 < len <= 65535, last byte NUL, no inner NUL;
//    connect_port 0 (allocate) or 513..768.
//  * SERVICE_CONNECT: 8 < len <= 40 (a short ident field is kept as sent,
//    see ServiceConnect), valid ident, connect_port 0 or 513..768.
Decoded<ClientRequest> DecodeClientRequest(const Header& untrusted_header,
                                           std::span<const std::byte> untrusted_body);

// Client reading the daemon's reply to a request with connect_port 0: same
// type as the request, len == 8. The port is not bounded: the daemon is
// trusted and allocated it. Errors are kMalformed.
Result<ExecParams> DecodeClientReply(const Header& untrusted_header,
                                     std::span<const std::byte> untrusted_body,
                                     MsgType request_type);

// Agent receiving on its trigger socket from qrexec-client-vm (§2.10): type
// 0x213, 160 < len <= 160+65000, then the same target/source/service checks
// as DecodeControlFromAgent under v4. The request id is NOT checked (the agent
// replaces it with "SOCKET<fd>"); Trigger::request_id is returned empty.
// Either failure kind means: close the socket.
Decoded<Trigger> DecodeTriggerSocketRequest(const Header& untrusted_header,
                                            std::span<const std::byte> untrusted_body);

// The fork server's request: `untrusted_bytes` is the 16-byte qrexec_cmd_info
// followed by exactly cmdline_len bytes. type 0x200/0x201; 2 <= cmdline_len
// <= kMaxForkServerCommand; last byte NUL, no inner NUL. Failures are kFatal.
Decoded<CmdInfo> DecodeForkServerRequest(std::span<const std::byte> untrusted_bytes);
// The command length announced by a 16-byte qrexec_cmd_info, checked against
// kMaxForkServerCommand before anything is buffered (kMalformed otherwise).
Result<size_t> ForkServerCommandLength(std::span<const std::byte, kCmdInfoSize> untrusted_header);

// MSG_HELLO on any channel: type 0x300, len == 4. Returns the peer's version
// unchecked (negotiation is handshake.h's job). Errors are kMalformed.
Result<Hello> DecodeHello(const Header& untrusted_header,
                          std::span<const std::byte> untrusted_body);

// The 8 raw bytes the agent writes to qrexec-client-vm (no header). Any
// connect_port is returned (the caller decides what it accepts).
ExecParams DecodeExecParams(std::span<const std::byte, kExecParamsSize> untrusted_bytes);

// ---------------------------------------------------------------------------
// Encoders (complete frames unless stated otherwise).

Bytes EncodeHello(uint32_t version);
// 8 raw bytes, no header (trigger-socket reply).
Bytes EncodeExecParams(const ExecParams& params);
// A client-socket reply: header of `type` + 8-byte exec_params.
Bytes EncodeClientReply(MsgType type, const ExecParams& params);
// kMalformed if `command` contains a NUL or the body would exceed
// kMaxControlFromDaemonBody.
Result<Bytes> EncodeExecRequest(const ExecRequest& request);
// kMalformed if ident is not a valid request id of at most 31 bytes.
Result<Bytes> EncodeServiceConnect(const ServiceConnect& message);
Result<Bytes> EncodeServiceRefused(std::string_view ident);
// Echoes the raw 32 ident bytes of a refused trigger (§2.6).
Bytes EncodeServiceRefusedRaw(const RawIdent& raw_ident);
// Uses trigger.type for the layout. kMalformed if a field contains a NUL or
// does not fit (v2: service <= 63, target <= 31; v3/v4: source/target <= 63,
// service+NUL <= 65000), if requested_source is set for v2/v3, or if the
// request id is invalid or longer than 31 bytes. Names are NOT sanitized
// here: they are written as given.
Result<Bytes> EncodeTrigger(const Trigger& trigger);
Bytes EncodeConnectionTerminated(const ConnectionTerminated& message);
// 16-byte qrexec_cmd_info + command + NUL (no msg_header). kMalformed for an
// empty command, an inner NUL, or a command longer than the limit.
Result<Bytes> EncodeCmdInfo(const CmdInfo& info);

// Fills a RawIdent from text (zero padded); for tests and for building refusals.
RawIdent MakeRawIdent(std::string_view text);

}  // namespace qrexec::proto
