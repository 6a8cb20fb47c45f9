// Transport::Serve and backend selection (transport.h).
#include "vchan/transport.h"

#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <string_view>

namespace qrexec::vchan {

Result<UniqueFd> Transport::Serve(int remote_domain, int port, const sys::Deadline& deadline) {
  auto pending = Offer(remote_domain, port);
  if (!pending) return tl::unexpected(pending.error());
  return (*pending)->Finish(deadline);
}

Result<UniqueFd> Transport::OfferToHandOver(int, int) {
  return MakeError(ErrorKind::kInternal, "this vchan backend cannot hand an offer over");
}

Result<std::unique_ptr<PendingServer>> Transport::AdoptOffer(UniqueFd) {
  return MakeError(ErrorKind::kInternal, "this vchan backend cannot adopt an offer");
}

namespace {

std::string_view Env(const char* name) {
  const char* value = std::getenv(name);
  return value ? std::string_view(value) : std::string_view();
}

}  // namespace

Result<std::unique_ptr<Transport>> MakeTransportFromEnv() {
  int own_domain = 0;
  if (std::string_view text = Env("VCHAN_DOMAIN"); !text.empty()) {
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), own_domain);
    if (ec != std::errc() || end != text.data() + text.size() || own_domain < 0)
      return MakeError(ErrorKind::kMalformed, "invalid $VCHAN_DOMAIN");
  }
  if (std::string_view broker = Env("QREXEC_BROKER_SOCKET"); !broker.empty())
    return MakeBrokerTransport(std::string(broker), own_domain);
  std::string_view dir = Env("VCHAN_SOCKET_DIR");
  return MakeSocketTransport(dir.empty() ? std::string("/var/run/vchan") : std::string(dir),
                             own_domain);
}

}  // namespace qrexec::vchan
