#include "daemon/qubesd_call.h"

namespace qrexec::daemon {

Result<std::unique_ptr<QubesdCall>> QubesdCall::Start(event::Loop& loop, const std::string& socket,
                                                      const std::string& method,
                                                      const std::string& dest,
                                                      const std::string& payload,
                                                      Callback callback) {
  admin::Request request;
  request.method = method;
  request.dest_type = admin::DestType::kName;
  request.dest = dest;
  request.payload = payload;
  UnixExchange::Options options{.path = socket,
                                .request = admin::EncodeRequest(request),
                                .half_close = true,
                                .reply_limit = admin::kMaxReplySize,
                                .timeout = std::nullopt};
  auto call = std::make_unique<QubesdCall>();
  auto exchange = UnixExchange::Start(loop, std::move(options),
                                      [callback = std::move(callback)](Result<std::string> answer) {
                                        if (!answer)
                                          return callback(tl::unexpected(answer.error()));
                                        callback(admin::DecodeReply(*answer));
                                      });
  if (!exchange) return tl::unexpected(exchange.error());
  call->exchange_ = std::move(*exchange);
  return call;
}

bool StartSucceeded(const admin::Reply& reply) {
  return reply.ok || reply.exception_type == admin::kNotHaltedError;
}

}  // namespace qrexec::daemon
