// The dashboard qnetd serves at GET /: one self-contained HTML page (inline CSS and script;
// Chart.js comes from the server at /static/chart.js) that polls /api/v1/summary and /api/v1/jobs
// every few seconds and shows jobs by state, the queue length over time, workers, and a table of
// recent jobs with progress and accuracy. Text from jobs is inserted with textContent, never as
// HTML. With authentication on, the page takes the token once from its address's fragment
// (/#token=TOKEN, which browsers never send) or a sign-in form, keeps it in the tab's
// sessionStorage and sends it as "Authorization: Bearer" (docs/ARCHITECTURE.md, "Security").
//
//   return HttpResponse{.content_type = "text/html; charset=utf-8",
//                       .body = std::string(DashboardHtml())};
#ifndef QNET_SERVER_HTTP_DASHBOARD_PAGE_H_
#define QNET_SERVER_HTTP_DASHBOARD_PAGE_H_

#include <string>

#include "absl/strings/string_view.h"

namespace qnet::server {

absl::string_view DashboardHtml();

// The Content-Security-Policy to serve the page with: its inline script and style by hash,
// everything else from this server only.
const std::string& DashboardContentSecurityPolicy();

}  // namespace qnet::server

#endif  // QNET_SERVER_HTTP_DASHBOARD_PAGE_H_
