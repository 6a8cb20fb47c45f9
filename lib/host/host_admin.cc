// The admin side of the host: the qubesd-compatible methods, the control
// socket's extra methods, admin.vm.List and internal.GetSystemInfo.
#include <algorithm>
#include <cctype>

#include <nlohmann/json.hpp>

#include "admin/protocol.h"
#include "base/log.h"
#include "base/names.h"
#include "host/host.h"
#include "host/host_internal.h"

namespace qrexec::host {
namespace {

admin::Reply ReplyFor(const Error& error) {
  switch (error.kind) {
    case ErrorKind::kNotFound:
      return admin::Reply::Exception(std::string(admin::kNotFoundError), error.message);
    default:
      return admin::Reply::Exception(std::string(admin::kVMError), error.message);
  }
}

std::string Lower(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(), [](unsigned char c) { return std::tolower(c); });
  return text;
}

// The destination as the caller wrote it: a keyword comes without its '@'.
std::string DestOf(const admin::Request& request) {
  return request.dest_type == admin::DestType::kKeyword ? "@" + request.dest : request.dest;
}

}  // namespace

std::vector<DomainStatus> Host::List() const {
  std::vector<DomainStatus> out;
  out.push_back(DomainStatus{"dom0", "AdminVM", "Running", "", kDom0Uuid, 0});
  for (const auto& domain : domains_) {
    out.push_back(DomainStatus{domain->config.name, DomainClassName(domain->config.klass),
                               PowerStateName(domain->state), domain->config.template_name, domain->config.uuid,
                               domain->id});
  }
  return out;
}

std::string Host::SystemInfoJson() const {
  nlohmann::json domains = nlohmann::json::object();
  auto or_null = [](const std::string& text) { return text.empty() ? nlohmann::json(nullptr) : nlohmann::json(text); };
  domains["dom0"] = {{"internal", nullptr},
                     {"tags", nlohmann::json::array()},
                     {"type", "AdminVM"},
                     {"template_for_dispvms", false},
                     {"default_dispvm", or_null(options_.config.default_dispvm)},
                     {"icon", "adminvm-black"},
                     {"label", LabelColor("black")},
                     {"guivm", nullptr},
                     {"relayvm", nullptr},
                     {"transport_rpc", nullptr},
                     {"power_state", "Running"},
                     {"uuid", kDom0Uuid}};
  for (const auto& domain : domains_) {
    const DomainConfig& config = domain->config;
    domains[config.name] = {{"internal", nullptr},
                            {"tags", config.tags},
                            {"type", DomainClassName(config.klass)},
                            {"template_for_dispvms", config.template_for_dispvms},
                            {"default_dispvm", or_null(config.default_dispvm)},
                            {"icon", Lower(DomainClassName(config.klass)) + "-" + config.label},
                            {"label", LabelColor(config.label)},
                            // Prompts and notifications show on the host.
                            {"guivm", "dom0"},
                            {"relayvm", nullptr},
                            {"transport_rpc", nullptr},
                            {"power_state", PowerStateName(domain->state)},
                            {"uuid", config.uuid}};
  }
  return nlohmann::json{{"domains", domains}}.dump();
}

void Host::RegisterHandlers(admin::Server& server, bool control) {
  server.Handle("admin.vm.Start", [this](const admin::Request& request, admin::Server::Respond respond) {
    Start(DestOf(request), [respond](Status status) {
      if (status) return respond(admin::Reply::Ok());
      if (status.error().kind == ErrorKind::kRefused)
        return respond(admin::Reply::Exception(std::string(admin::kNotHaltedError), status.error().message));
      respond(ReplyFor(status.error()));
    });
  });
  server.Handle("admin.vm.Kill", [this](const admin::Request& request, admin::Server::Respond respond) {
    Status status = Kill(DestOf(request));
    if (status) return respond(admin::Reply::Ok());
    if (status.error().kind == ErrorKind::kRefused)
      return respond(admin::Reply::Exception(std::string(admin::kNotStartedError), status.error().message));
    respond(ReplyFor(status.error()));
  });
  server.Handle("admin.vm.CreateDisposable", [this](const admin::Request& request, admin::Server::Respond respond) {
    // The disposable belongs to the call of the domain whose daemon (or a
    // process it started) asks; it goes when that domain stops.
    auto created = CreateDisposable(DestOf(request), DomainOfDaemonProcess(request.peer_pid));
    if (!created) return respond(ReplyFor(created.error()));
    // Payload "uuid": answer with the new domain's uuid (what qrexec-daemon
    // asks for), otherwise with its name (older callers).
    respond(admin::Reply::Ok(request.payload == "uuid" ? "uuid:" + created->second : created->first));
  });
  server.Handle("admin.vm.List", [this](const admin::Request& request, admin::Server::Respond respond) {
    std::string dest = DestOf(request);
    bool all = names::RefersToDom0(dest);
    std::vector<DomainStatus> list = List();
    std::sort(list.begin(), list.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
    std::string text;
    bool found = false;
    Domain* one = all ? nullptr : Find(dest);
    for (const auto& entry : list) {
      if (!all && (one == nullptr || entry.name != one->config.name)) continue;
      found = true;
      text += entry.name + " class=" + entry.klass + " state=" + entry.state + "\n";
    }
    if (!found) return respond(admin::Reply::Exception(std::string(admin::kNotFoundError), "no such domain"));
    respond(admin::Reply::Ok(text));
  });
  server.Handle("internal.GetSystemInfo", [this](const admin::Request&, admin::Server::Respond respond) {
    respond(admin::Reply::Ok(SystemInfoJson()));
  });
  if (!control) return;
  // host.List: one line per domain: NAME CLASS STATE TEMPLATE(or -) ID UUID
  server.Handle("host.List", [this](const admin::Request&, admin::Server::Respond respond) {
    std::string text;
    for (const auto& entry : List())
      text += entry.name + " " + entry.klass + " " + entry.state + " " +
              (entry.template_name.empty() ? "-" : entry.template_name) + " " + std::to_string(entry.id) + " " +
              entry.uuid + "\n";
    respond(admin::Reply::Ok(text));
  });
  // host.Paths: key=value lines the CLI needs to run qrexec-client.
  server.Handle("host.Paths", [this](const admin::Request&, admin::Server::Respond respond) {
    respond(admin::Reply::Ok("socket_dir=" + paths_.daemon_socket_dir + "\nbroker_socket=" +
                             paths_.BrokerSocket("dom0") + "\nbin_dir=" + options_.bin_dir + "\n"));
  });
}

}  // namespace qrexec::host
