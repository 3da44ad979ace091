// WebApi: the HTTP routes qnetd serves next to gRPC (plug it into HttpServer), and who may ask
// (identities as for gRPC, http_auth.h; docs/ARCHITECTURE.md, "Security"):
//   GET /metrics            Prometheus text format                          metrics, admin
//   GET /healthz            200 "ok" while gRPC serves, else 503 and why    anyone
//   GET /api/v1/jobs        ListJobs as JSON; ?state=queued&page_size=50&page_token=...
//                           (a client's own jobs, an admin's every job)     client, admin
//   GET /api/v1/jobs/{id}   one Job as JSON (404 if unknown or another's)   client, admin
//   GET /api/v1/summary     jobs by state, queue length, workers, version   client, admin, metrics
//   GET /                   the dashboard page; GET /static/chart.js serves Chart.js: static
//                           files with no data, so a browser can load them before it has an
//                           identity to send (the page's script sends the token)     anyone
// JSON is the protobuf JSON mapping with the proto field names and every field printed.
//
//   WebApi api(&scheduler, &metrics, &authenticator, [&] { return probe.Check(); },
//              "/usr/share/javascript/...", "1.0.0");
//   auto http = HttpServer::Start(addr, [&](const HttpRequest& r) { return api.Handle(r); });
#ifndef QNET_SERVER_HTTP_WEB_API_H_
#define QNET_SERVER_HTTP_WEB_API_H_

#include <functional>
#include <string>

#include "absl/status/status.h"
#include "server/auth/authenticator.h"
#include "server/http/http_server.h"
#include "server/metrics/metrics_registry.h"
#include "server/scheduling/scheduler.h"

namespace qnet::server {

class WebApi {
 public:
  // `health` decides /healthz: OK is 200, an error 503 with its message. Chart.js is read once
  // from `chartjs_path` (a missing file only means the dashboard draws no charts).
  WebApi(Scheduler* scheduler, MetricsRegistry* metrics, const Authenticator* auth,
         std::function<absl::Status()> health, const std::string& chartjs_path,
         std::string version);

  HttpResponse Handle(const HttpRequest& request) const;

 private:
  HttpResponse ListJobs(const HttpRequest& request, const Identity& caller) const;
  HttpResponse GetJob(const std::string& id, const Identity& caller) const;
  HttpResponse Summary() const;

  Scheduler* const scheduler_;
  MetricsRegistry* const metrics_;
  const Authenticator* const auth_;
  const std::function<absl::Status()> health_;
  std::string chartjs_;
  const std::string version_;
};

}  // namespace qnet::server

#endif  // QNET_SERVER_HTTP_WEB_API_H_
