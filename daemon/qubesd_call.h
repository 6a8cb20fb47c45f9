// QubesdCall: one asynchronous qubesd admin call (admin.vm.Start,
// admin.vm.CreateDisposable, admin.vm.Kill) from the daemon's loop, over the
// qubesd socket protocol of lib/admin. The callback gets the decoded reply
// (an exception reply is a value, not an error) or a transport error.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "admin/protocol.h"
#include "base/result.h"
#include "daemon/unix_exchange.h"
#include "event/loop.h"

namespace qrexec::daemon {

class QubesdCall {
 public:
  using Callback = std::function<void(Result<admin::Reply>)>;
  // `dest` is a name or "uuid:..." (dest type name).
  static Result<std::unique_ptr<QubesdCall>> Start(event::Loop& loop, const std::string& socket,
                                                   const std::string& method,
                                                   const std::string& dest,
                                                   const std::string& payload, Callback callback);

 private:
  std::unique_ptr<UnixExchange> exchange_;
};

// admin.vm.Start succeeded: "0" or a QubesVMNotHaltedError exception.
bool StartSucceeded(const admin::Reply& reply);

}  // namespace qrexec::daemon
