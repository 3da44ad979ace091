// HttpServer + WebApi: /healthz, /metrics (checked with promtool when installed), the REST
// endpoints and the dashboard, over a real socket on 127.0.0.1.
#include <cstdio>
#include <thread>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "server/http/http_server.h"
#include "server/http/web_api.h"
#include "server/store/sqlite_job_store.h"
#include "tests/server/test_util.h"

namespace qnet::server {
namespace {

using ::testing::HasSubstr;
using testing::HttpGet;
using testing::TempDir;

class HttpTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto store = SqliteJobStore::Open(dir_ / "jobs.db");
    ASSERT_TRUE(store.ok());
    store_ = *std::move(store);
    scheduler_ = std::make_unique<Scheduler>(store_.get(), &clock_, SchedulerOptions{}, &metrics_);
    ASSERT_TRUE(scheduler_->Recover().ok());
    metrics_.SetCollectHook([this] {
      SchedulerStats stats = scheduler_->Stats();
      metrics_.SetJobCounts(stats.jobs);
      metrics_.SetWorkers(stats.workers_busy, stats.workers_idle);
    });
    api_ = std::make_unique<WebApi>(
        scheduler_.get(), &metrics_, [this] { return serving_.load(); },
        "/usr/share/javascript/chart.js/chart.min.js", "9.9.9");
    auto http =
        HttpServer::Start("127.0.0.1:0", [this](const HttpRequest& r) { return api_->Handle(r); });
    ASSERT_TRUE(http.ok()) << http.status();
    http_ = *std::move(http);
    addr_ = http_->address();
  }

  std::string Submit() {
    qnet::v1::JobSpec spec;
    spec.set_model("zoo:lenet5");
    spec.set_dataset("fashion-mnist");
    spec.set_weight_bits(2);
    auto job = scheduler_->Submit(spec, "");
    EXPECT_TRUE(job.ok());
    return job->id();
  }

  TempDir dir_;
  testing::FakeClock clock_;
  MetricsRegistry metrics_{"9.9.9"};
  std::unique_ptr<SqliteJobStore> store_;
  std::unique_ptr<Scheduler> scheduler_;
  std::atomic<bool> serving_{true};
  std::unique_ptr<WebApi> api_;
  std::unique_ptr<HttpServer> http_;
  std::string addr_;
};

TEST_F(HttpTest, HealthzFollowsServingState) {
  EXPECT_THAT(addr_, ::testing::StartsWith("127.0.0.1:"));
  testing::HttpResult ok = HttpGet(addr_, "/healthz");
  EXPECT_EQ(ok.status, 200);
  EXPECT_EQ(ok.body, "ok\n");
  serving_ = false;
  testing::HttpResult draining = HttpGet(addr_, "/healthz");
  EXPECT_EQ(draining.status, 503);
  EXPECT_EQ(draining.body, "draining\n");
}

TEST_F(HttpTest, MetricsInPrometheusTextFormat) {
  Submit();
  Submit();
  metrics_.GrpcRequest("/qnet.v1.JobService/GetJob", 5, absl::Milliseconds(2));
  metrics_.BlobBytes(MetricsRegistry::BlobDirection::kUpload, 1024);
  testing::HttpResult r = HttpGet(addr_, "/metrics");
  ASSERT_EQ(r.status, 200);
  EXPECT_THAT(r.content_type, HasSubstr("text/plain; version=0.0.4"));
  for (const char* want : {
           "# TYPE qnet_jobs_submitted_total counter",
           "qnet_jobs_submitted_total 2",
           "qnet_jobs{state=\"queued\"} 2",
           "qnet_jobs_finished_total{outcome=\"succeeded\"} 0",
           "# TYPE qnet_queue_wait_seconds histogram",
           "# TYPE qnet_job_duration_seconds histogram",
           "qnet_lease_expirations_total 0",
           "qnet_workers{state=\"busy\"} 0",
           "qnet_grpc_requests_total{code=\"NOT_FOUND\",method=\"qnet.v1.JobService/GetJob\"} 1",
           "qnet_grpc_request_duration_seconds_count{method=\"qnet.v1.JobService/GetJob\"} 1",
           "qnet_blob_bytes_total{direction=\"upload\"} 1024",
           "qnet_build_info{version=\"9.9.9\"} 1",
       }) {
    EXPECT_THAT(r.body, HasSubstr(want));
  }
  EXPECT_THAT(r.body, ::testing::Not(HasSubstr("j-")));  // no job ids as labels
#ifdef QNET_PROMTOOL
  testing::WriteFile(dir_ / "metrics.txt", r.body);
  const std::string cmd =
      std::string(QNET_PROMTOOL) + " check metrics < " + (dir_ / "metrics.txt") + " 2>&1";
  FILE* p = ::popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::string out;
  char buf[512];
  while (fgets(buf, sizeof buf, p) != nullptr) out += buf;
  EXPECT_EQ(::pclose(p), 0) << "promtool check metrics: " << out;
#endif
}

TEST_F(HttpTest, JobsAsJson) {
  const std::string a = Submit();
  const std::string b = Submit();
  testing::HttpResult list = HttpGet(addr_, "/api/v1/jobs?page_size=1");
  ASSERT_EQ(list.status, 200);
  EXPECT_EQ(list.content_type, "application/json");
  nlohmann::json page = nlohmann::json::parse(list.body);
  ASSERT_EQ(page["jobs"].size(), 1u);
  EXPECT_EQ(page["jobs"][0]["id"], b);  // newest first
  EXPECT_EQ(page["jobs"][0]["state"], "QUEUED");
  EXPECT_EQ(page["jobs"][0]["spec"]["weight_bits"], 2);
  EXPECT_EQ(page["jobs"][0]["cancel_requested"], false);  // every field printed
  const std::string token = page["next_page_token"];
  ASSERT_FALSE(token.empty());
  nlohmann::json next =
      nlohmann::json::parse(HttpGet(addr_, "/api/v1/jobs?page_size=1&page_token=" + token).body);
  EXPECT_EQ(next["jobs"][0]["id"], a);
  EXPECT_EQ(next["next_page_token"], "");

  nlohmann::json queued = nlohmann::json::parse(HttpGet(addr_, "/api/v1/jobs?state=queued").body);
  EXPECT_EQ(queued["jobs"].size(), 2u);
  EXPECT_EQ(HttpGet(addr_, "/api/v1/jobs?state=bogus").status, 400);
  EXPECT_EQ(HttpGet(addr_, "/api/v1/jobs?page_token=garbage").status, 400);

  testing::HttpResult one = HttpGet(addr_, "/api/v1/jobs/" + a);
  ASSERT_EQ(one.status, 200);
  EXPECT_EQ(nlohmann::json::parse(one.body)["id"], a);
  testing::HttpResult missing = HttpGet(addr_, "/api/v1/jobs/j-0000");
  EXPECT_EQ(missing.status, 404);
  EXPECT_THAT(missing.body, HasSubstr("not found"));

  nlohmann::json summary = nlohmann::json::parse(HttpGet(addr_, "/api/v1/summary").body);
  EXPECT_EQ(summary["jobs"]["queued"], 2);
  EXPECT_EQ(summary["version"], "9.9.9");
}

TEST_F(HttpTest, DashboardAndStatic) {
  testing::HttpResult page = HttpGet(addr_, "/");
  ASSERT_EQ(page.status, 200);
  EXPECT_THAT(page.content_type, HasSubstr("text/html"));
  EXPECT_THAT(page.body, HasSubstr("/static/chart.js"));
  EXPECT_THAT(page.body, HasSubstr("/api/v1/jobs"));
  testing::HttpResult chart = HttpGet(addr_, "/static/chart.js");
  if (std::FILE* f = std::fopen("/usr/share/javascript/chart.js/chart.min.js", "r")) {
    std::fclose(f);
    EXPECT_EQ(chart.status, 200);
    EXPECT_THAT(chart.body, HasSubstr("Chart.js"));
  }
  EXPECT_EQ(HttpGet(addr_, "/nope").status, 404);
}

TEST_F(HttpTest, ManyConcurrentClients) {
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 20; ++i) ok += HttpGet(addr_, "/healthz").status == 200;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok, 160);
  http_->Stop();
  http_->Stop();  // idempotent
  EXPECT_EQ(HttpGet(addr_, "/healthz").status, 0);
}

}  // namespace
}  // namespace qnet::server
