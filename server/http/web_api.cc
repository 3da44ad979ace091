#include "server/http/web_api.h"

#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/util/json_util.h"
#include "nlohmann/json.hpp"
#include "server/http/dashboard_page.h"
#include "server/http/http_auth.h"
#include "server/scheduling/page_token.h"
#include "spdlog/spdlog.h"

namespace qnet::server {
namespace {

constexpr const char* kJson = "application/json";
constexpr int kDefaultPageSize = 50;
constexpr int kMaxPageSize = 500;
constexpr RoleSet kJobReaders = RoleBit(Role::kClient) | RoleBit(Role::kAdmin);
constexpr RoleSet kScrapers = RoleBit(Role::kMetrics) | RoleBit(Role::kAdmin);

int HttpStatusOf(const absl::Status& s) {
  switch (s.code()) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kOutOfRange:
      return 400;
    case absl::StatusCode::kNotFound:
      return 404;
    case absl::StatusCode::kFailedPrecondition:
      return 409;
    case absl::StatusCode::kResourceExhausted:
      return 429;
    case absl::StatusCode::kUnavailable:
      return 503;
    default:
      return 500;
  }
}

HttpResponse JsonError(const absl::Status& s) {
  nlohmann::json body = {{"error", std::string(s.message())},
                         {"code", absl::StatusCodeToString(s.code())}};
  // The message may quote the request (a job id from the path), which need not be UTF-8: replace
  // bad bytes rather than throw (a 500 for a 404).
  return {HttpStatusOf(s),
          kJson,
          body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n",
          {}};
}

HttpResponse ProtoJson(const google::protobuf::Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  options.always_print_primitive_fields = true;
  std::string out;
  auto status = google::protobuf::util::MessageToJsonString(message, &out, options);
  if (!status.ok()) return JsonError(absl::InternalError(std::string(status.message())));
  return {200, kJson, out + "\n", {{"Cache-Control", "no-store"}}};
}

}  // namespace

WebApi::WebApi(Scheduler* scheduler, MetricsRegistry* metrics, const Authenticator* auth,
               std::function<absl::Status()> health, const std::string& chartjs_path,
               std::string version)
    : scheduler_(scheduler),
      metrics_(metrics),
      auth_(auth),
      health_(std::move(health)),
      version_(std::move(version)) {
  std::ifstream in(chartjs_path, std::ios::binary);
  if (in) {
    std::ostringstream data;
    data << in.rdbuf();
    chartjs_ = data.str();
  } else {
    spdlog::warn(
        "Chart.js not found at {} (apt install libjs-chart.js); the dashboard will "
        "show no charts",
        chartjs_path);
  }
}

HttpResponse WebApi::Handle(const HttpRequest& request) const {
  const std::string& path = request.path;
  if (path == "/healthz") {
    const absl::Status health = health_();
    if (health.ok()) return {200, "text/plain; charset=utf-8", "ok\n", {}};
    return {503, "text/plain; charset=utf-8", absl::StrCat(health.message(), "\n"), {}};
  }
  if (path == "/metrics") {
    absl::StatusOr<Identity> who = HttpCaller(*auth_, request, kScrapers, "scrape /metrics");
    if (!who.ok()) return AuthRefusal(who.status(), /*json=*/false);
    return {200, "text/plain; version=0.0.4; charset=utf-8", metrics_->Serialize(), {}};
  }
  if (path == "/" || path == "/index.html") {
    return {200,
            "text/html; charset=utf-8",
            std::string(DashboardHtml()),
            {{"Content-Security-Policy", DashboardContentSecurityPolicy()},
             {"Cache-Control", "no-cache"}}};
  }
  if (path == "/static/chart.js") {
    if (chartjs_.empty()) return {404, "text/plain; charset=utf-8", "Chart.js not installed\n", {}};
    return {200,
            "application/javascript; charset=utf-8",
            chartjs_,
            {{"Cache-Control", "public, max-age=86400"}}};
  }
  if (absl::StartsWith(path, "/api/v1/jobs")) {
    absl::StatusOr<Identity> who = HttpCaller(*auth_, request, kJobReaders, "read jobs");
    if (!who.ok()) return AuthRefusal(who.status(), /*json=*/true);
    if (path == "/api/v1/jobs" || path == "/api/v1/jobs/") return ListJobs(request, *who);
    if (absl::StartsWith(path, "/api/v1/jobs/")) {
      return GetJob(path.substr(absl::string_view("/api/v1/jobs/").size()), *who);
    }
  }
  if (path == "/api/v1/summary") {
    // Counts only, no job of anyone's: the same numbers /metrics has.
    absl::StatusOr<Identity> who =
        HttpCaller(*auth_, request, kJobReaders | kScrapers, "read the summary");
    if (!who.ok()) return AuthRefusal(who.status(), /*json=*/true);
    return Summary();
  }
  // A fixed body: echoing the path would let a link put text of its choosing on this origin.
  return {404, "text/plain; charset=utf-8", "not found\n", {}};
}

HttpResponse WebApi::ListJobs(const HttpRequest& request, const Identity& caller) const {
  qnet::v1::JobState state = qnet::v1::JOB_STATE_UNSPECIFIED;
  if (auto it = request.query.find("state"); it != request.query.end() && !it->second.empty()) {
    if (!qnet::v1::JobState_Parse(absl::AsciiStrToUpper(it->second), &state) ||
        state == qnet::v1::JOB_STATE_UNSPECIFIED) {
      return JsonError(absl::InvalidArgumentError(absl::StrCat(
          "state must be queued, running, succeeded, failed or cancelled (got ", it->second, ")")));
    }
  }
  int page_size = kDefaultPageSize;
  if (auto it = request.query.find("page_size"); it != request.query.end()) {
    if (!absl::SimpleAtoi(it->second, &page_size) || page_size < 0) {
      return JsonError(absl::InvalidArgumentError("page_size must be a non-negative number"));
    }
    if (page_size == 0) page_size = kDefaultPageSize;
    page_size = std::min(page_size, kMaxPageSize);
  }
  std::string token;
  if (auto it = request.query.find("page_token"); it != request.query.end()) token = it->second;
  absl::StatusOr<int64_t> before_seq = DecodePageToken(token, state);
  if (!before_seq.ok()) return JsonError(before_seq.status());
  absl::StatusOr<JobList> list =
      scheduler_->List(state, *before_seq, page_size, caller.is_admin() ? "" : caller.name);
  if (!list.ok()) return JsonError(list.status());
  qnet::v1::ListJobsResponse response;
  for (qnet::v1::Job& job : list->jobs) *response.add_jobs() = std::move(job);
  response.set_next_page_token(EncodePageToken(state, list->next_before_seq));
  return ProtoJson(response);
}

HttpResponse WebApi::GetJob(const std::string& id, const Identity& caller) const {
  absl::StatusOr<qnet::v1::Job> job = scheduler_->Get(id);
  if (!job.ok()) return JsonError(job.status());
  // Another's job answers as a missing one would: its id tells nothing.
  if (!caller.is_admin() && job->owner() != caller.name) {
    return JsonError(absl::NotFoundError(absl::StrCat("job ", id, " not found")));
  }
  return ProtoJson(*job);
}

HttpResponse WebApi::Summary() const {
  SchedulerStats stats = scheduler_->Stats();
  nlohmann::json jobs = nlohmann::json::object();
  for (qnet::v1::JobState s : {qnet::v1::QUEUED, qnet::v1::RUNNING, qnet::v1::SUCCEEDED,
                               qnet::v1::FAILED, qnet::v1::CANCELLED}) {
    auto it = stats.jobs.find(s);
    jobs[std::string(JobStateLabel(s))] = it == stats.jobs.end() ? 0 : it->second;
  }
  nlohmann::json body = {
      {"version", version_},
      {"serving", health_().ok()},
      {"jobs", jobs},
      {"queue_length", stats.queued},
      {"workers", {{"busy", stats.workers_busy}, {"idle", stats.workers_idle}}},
  };
  return {200, kJson, body.dump() + "\n", {{"Cache-Control", "no-store"}}};
}

}  // namespace qnet::server
