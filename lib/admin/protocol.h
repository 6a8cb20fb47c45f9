// The qubesd socket protocol (qrexec-protocol.md §2.1, "qubesd socket" row).
//
// Request, written by the client, which then half-closes its side:
//   METHOD[+ARG] SP SOURCE SP TYPE SP DEST NUL PAYLOAD
// SOURCE is the calling domain (always "dom0" for our clients), TYPE is
// "name" or "keyword", DEST the domain the call is about.
// Reply, read until EOF:
//   "0" NUL PAYLOAD                                    success
//   "2" NUL EXC_TYPE NUL TRACEBACK NUL MESSAGE NUL     exception
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <string>
#include <string_view>

#include "base/result.h"

namespace qrexec::admin {

// Upper bound of a whole request (header + payload) the server accepts, and
// of a reply the client accepts.
inline constexpr size_t kMaxRequestSize = 64 * 1024;
inline constexpr size_t kMaxReplySize = 4 * 1024 * 1024;
// Upper bound of each header token.
inline constexpr size_t kMaxTokenLen = 256;

enum class DestType { kName, kKeyword };

struct Request {
  std::string method;     // e.g. "admin.vm.Start"
  std::string argument;   // text after '+', empty when absent
  std::string source = "dom0";
  DestType dest_type = DestType::kName;
  std::string dest;       // e.g. "work", "uuid:...", "dom0"
  std::string payload;
  // The header had a '+' (with or without an argument): qubesd's own C
  // client always writes "METHOD+ARG", also with an empty ARG.
  bool plus = false;
  // Not part of the wire format: the server fills it in from SO_PEERCRED
  // (the process that connected; 0 when unknown). Handlers may use it to
  // tell which local process asked, never as an authorisation by itself.
  pid_t peer_pid = 0;
};

// Serialises a request (the caller half-closes after writing it).
std::string EncodeRequest(const Request& request);

// Decodes a complete request as read until EOF. Tokens must be non-empty,
// at most kMaxTokenLen bytes of [A-Za-z0-9_.:@+-] (method/argument: no ':'/'@'
// in the method), TYPE "name" or "keyword".
Result<Request> DecodeRequest(std::string_view untrusted_request);

struct Reply {
  bool ok = true;
  std::string payload;         // ok
  std::string exception_type;  // !ok, e.g. "QubesVMNotFoundError"
  std::string message;         // !ok, human-readable

  static Reply Ok(std::string payload = {}) { return Reply{true, std::move(payload), {}, {}}; }
  static Reply Exception(std::string type, std::string message) {
    return Reply{false, {}, std::move(type), std::move(message)};
  }
};

std::string EncodeReply(const Reply& reply);
Result<Reply> DecodeReply(std::string_view untrusted_reply);

// Exception type names used by qubesd that our server returns.
inline constexpr std::string_view kNotFoundError = "QubesVMNotFoundError";
inline constexpr std::string_view kNotHaltedError = "QubesVMNotHaltedError";
inline constexpr std::string_view kNotStartedError = "QubesVMNotStartedError";
inline constexpr std::string_view kVMError = "QubesVMError";
inline constexpr std::string_view kProtocolError = "ProtocolError";
inline constexpr std::string_view kPermissionDenied = "PermissionDenied";
inline constexpr std::string_view kQubesException = "QubesException";

}  // namespace qrexec::admin
