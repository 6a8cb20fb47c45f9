// qubesd socket client (blocking; one request per connection).
#pragma once

#include <string>

#include "admin/protocol.h"
#include "base/result.h"
#include "base/sys.h"

namespace qrexec::admin {

// Connects to `socket_path`, sends `request`, half-closes and reads the reply
// until EOF. Transport problems and malformed replies are errors; a qubesd
// exception is a successful Result holding a Reply with ok == false.
Result<Reply> Call(const std::string& socket_path, const Request& request,
                   const sys::Deadline& deadline = sys::Deadline::Never());

// Call() for the common "method on a destination" case; an exception reply
// becomes an error (kNotFound for QubesVMNotFoundError, kRefused otherwise)
// whose message is "TYPE: MESSAGE".
Result<std::string> CallOk(const std::string& socket_path, const std::string& method,
                           const std::string& dest, const std::string& payload = {},
                           const sys::Deadline& deadline = sys::Deadline::Never());

}  // namespace qrexec::admin
