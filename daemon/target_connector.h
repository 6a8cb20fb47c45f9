// TargetConnector: the "connect the call to a target VM" step of an allowed
// call (qrexec-protocol.md §5.1 step 4, §2.11), run in the daemon's loop.
//
//   1. connect to <socket-dir>/qrexec.<target_uuid or target>; if nobody
//      listens and autostart is set, qubesd admin.vm.Start, then retry once;
//   2. send our HELLO and MSG_EXEC_CMDLINE{connect_domain = our VM, port 0,
//      "USER:QUBESRPC SERVICE+ARG SOURCE"} at once (no round trip);
//   3. check the daemon's HELLO (client protocol >= 3), then its reply
//      {target domid, port}, which is reported through on_connected.
// Disposables (target "@dispvm:..."): admin.vm.CreateDisposable on the
// template, admin.vm.Start on the new qube, then as above; the target
// daemon connection is kept open after the reply until that daemon closes
// it (the call ended), then admin.vm.Kill (also on any failure after the
// creation).
//
// The call may also end on the source side first: the source agent reports
// MSG_CONNECTION_TERMINATED{target domid, port} when its caller goes away,
// also before the target joined the data connection (then the target daemon
// would not drop us until the service gave up waiting). The daemon passes
// that on with SourceTerminated(), which kills the disposable at once.
//
// on_connected runs once (success or failure). on_finished runs once when
// nothing is left to do (right after on_connected for ordinary targets);
// the owner may destroy the connector from either callback.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "base/result.h"
#include "daemon/message_conn.h"
#include "daemon/qubesd_call.h"
#include "event/loop.h"
#include "proto/messages.h"

namespace qrexec::daemon {

struct TargetRequest {
  std::string dest;  // target_uuid if given, else target ("@dispvm:..." for disposables)
  bool autostart = false;
  std::string command;  // "USER:QUBESRPC SERVICE+ARG SOURCE"
  int own_domid = 0;
};

struct TargetPaths {
  std::string socket_dir;
  std::string qubesd_socket;
};

class TargetConnector {
 public:
  struct Callbacks {
    std::function<void(Result<proto::ExecParams>)> on_connected;
    std::function<void()> on_finished;
  };

  static Result<std::unique_ptr<TargetConnector>> Start(event::Loop& loop, const TargetPaths& paths,
                                                        TargetRequest request, Callbacks callbacks);
  ~TargetConnector();  // cancels everything; a created disposable is not killed

  // The source side reports `connection` (what on_connected gave) ended. A
  // lingering disposable call with that connection is killed now (on_finished
  // follows, possibly before this returns: the owner must not touch the
  // connector after a true result). False when it is not this call's.
  bool SourceTerminated(const proto::ExecParams& connection);
  TargetConnector(const TargetConnector&) = delete;
  TargetConnector& operator=(const TargetConnector&) = delete;

 private:
  enum class Stage {
    kCreating,
    kStarting,
    kConnecting,
    kHello,
    kReply,
    kLingering,
    kKilling,
    kDone
  };
  TargetConnector(event::Loop& loop, const TargetPaths& paths, TargetRequest request,
                  Callbacks callbacks);
  void Begin();
  void Qubesd(const std::string& method, const std::string& dest, const std::string& payload,
              std::function<void(Result<admin::Reply>)> then);
  void CreateDisposable();
  void StartDomain(const std::string& dest);
  void Connect(bool may_autostart);
  void OnMessage(proto::Message message);
  void OnClose(Status status);
  void Fail(const std::string& why);
  void Succeed(proto::ExecParams params);
  void KillDisposable();
  void Done();

  event::Loop& loop_;
  TargetPaths paths_;
  TargetRequest request_;
  Callbacks callbacks_;
  Stage stage_ = Stage::kConnecting;
  std::string socket_dest_;  // what goes after "qrexec."
  std::string disposable_;   // "uuid:..." of a created disposable
  proto::ExecParams connection_{};  // the target's reply, once connected
  std::unique_ptr<QubesdCall> qubesd_;
  std::unique_ptr<MessageConn> conn_;
  event::Timer kickoff_;
  bool connected_reported_ = false;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace qrexec::daemon
