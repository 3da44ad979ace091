#include "server/metrics/metrics_registry.h"

#include <algorithm>
#include <sstream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/descriptor.h"
#include "prometheus/text_serializer.h"

namespace qnet::server {
namespace {

constexpr absl::string_view kUnknownGrpcMethod = "unknown";

bool IsServedGrpcMethod(absl::string_view method) {
  // The default health service is not built from the generated descriptor pool.
  if (method == "grpc.health.v1.Health/Check" || method == "grpc.health.v1.Health/Watch") {
    return true;
  }
  const size_t slash = method.find('/');
  if (slash == absl::string_view::npos) return false;
  return google::protobuf::DescriptorPool::generated_pool()->FindMethodByName(
             absl::StrCat(method.substr(0, slash), ".", method.substr(slash + 1))) != nullptr;
}

using qnet::v1::JobState;

constexpr std::array<absl::string_view, 17> kCodeNames = {
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
};

prometheus::Histogram::BucketBoundaries QueueWaitBuckets() {
  return {0.1, 0.5, 1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400};
}
prometheus::Histogram::BucketBoundaries JobDurationBuckets() {
  return {1, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, 43200, 86400};
}
prometheus::Histogram::BucketBoundaries GrpcBuckets() {
  return {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
          0.1,    0.25,    0.5,    1,     2.5,    5,     10,   30,    60};
}

}  // namespace

absl::string_view JobStateLabel(JobState state) {
  switch (state) {
    case qnet::v1::QUEUED:
      return "queued";
    case qnet::v1::RUNNING:
      return "running";
    case qnet::v1::SUCCEEDED:
      return "succeeded";
    case qnet::v1::FAILED:
      return "failed";
    case qnet::v1::CANCELLED:
      return "cancelled";
    default:
      return "unspecified";
  }
}

MetricsRegistry::MetricsRegistry(absl::string_view version)
    : registry_(std::make_shared<prometheus::Registry>()) {
  auto& r = *registry_;
  jobs_submitted_ = &prometheus::BuildCounter()
                         .Name("qnet_jobs_submitted_total")
                         .Help("Jobs accepted by SubmitJob (repeats of a request_id not counted).")
                         .Register(r)
                         .Add({});
  jobs_finished_ = &prometheus::BuildCounter()
                        .Name("qnet_jobs_finished_total")
                        .Help("Jobs that reached a terminal state, by outcome.")
                        .Register(r);
  for (JobState s : {qnet::v1::SUCCEEDED, qnet::v1::FAILED, qnet::v1::CANCELLED}) {
    jobs_finished_->Add({{"outcome", std::string(JobStateLabel(s))}});
  }
  jobs_ =
      &prometheus::BuildGauge().Name("qnet_jobs").Help("Jobs in the store, by state.").Register(r);
  for (JobState s : {qnet::v1::QUEUED, qnet::v1::RUNNING, qnet::v1::SUCCEEDED, qnet::v1::FAILED,
                     qnet::v1::CANCELLED}) {
    jobs_->Add({{"state", std::string(JobStateLabel(s))}});
  }
  queue_wait_ = &prometheus::BuildHistogram()
                     .Name("qnet_queue_wait_seconds")
                     .Help("Time a job waited in the queue before a worker leased it.")
                     .Register(r)
                     .Add({}, QueueWaitBuckets());
  job_duration_ = &prometheus::BuildHistogram()
                       .Name("qnet_job_duration_seconds")
                       .Help("Time from a job's first start to its terminal state.")
                       .Register(r)
                       .Add({}, JobDurationBuckets());
  lease_expirations_ = &prometheus::BuildCounter()
                            .Name("qnet_lease_expirations_total")
                            .Help("Leases that ran out without a heartbeat.")
                            .Register(r)
                            .Add({});
  auto& workers =
      prometheus::BuildGauge()
          .Name("qnet_workers")
          .Help("Workers seen in the last lease period, busy (holding a lease) or idle.")
          .Register(r);
  workers_busy_ = &workers.Add({{"state", "busy"}});
  workers_idle_ = &workers.Add({{"state", "idle"}});
  worker_images_per_second_ = &prometheus::BuildGauge()
                                   .Name("qnet_worker_images_per_second")
                                   .Help("Training throughput each worker last reported.")
                                   .Register(r);
  worker_device_memory_ = &prometheus::BuildGauge()
                               .Name("qnet_worker_device_memory_bytes")
                               .Help("Device memory in use each worker last reported.")
                               .Register(r);
  auto& blob_bytes = prometheus::BuildCounter()
                         .Name("qnet_blob_bytes_total")
                         .Help("Blob bytes received (upload) and sent (download).")
                         .Register(r);
  blob_upload_bytes_ = &blob_bytes.Add({{"direction", "upload"}});
  blob_download_bytes_ = &blob_bytes.Add({{"direction", "download"}});
  grpc_requests_ = &prometheus::BuildCounter()
                        .Name("qnet_grpc_requests_total")
                        .Help("Finished gRPC calls by method and status code.")
                        .Register(r);
  grpc_latency_ = &prometheus::BuildHistogram()
                       .Name("qnet_grpc_request_duration_seconds")
                       .Help("gRPC call duration by method (long-polls and streams included).")
                       .Register(r);
  prometheus::BuildGauge()
      .Name("qnet_build_info")
      .Help("Always 1; the version label says which qnetd is running.")
      .Register(r)
      .Add({{"version", std::string(version)}})
      .Set(1);
}

void MetricsRegistry::JobSubmitted() { jobs_submitted_->Increment(); }

void MetricsRegistry::JobFinished(JobState outcome, std::optional<absl::Duration> run_time) {
  jobs_finished_->Add({{"outcome", std::string(JobStateLabel(outcome))}}).Increment();
  if (run_time.has_value()) {
    job_duration_->Observe(absl::ToDoubleSeconds(std::max(*run_time, absl::ZeroDuration())));
  }
}

void MetricsRegistry::QueueWait(absl::Duration wait) {
  queue_wait_->Observe(absl::ToDoubleSeconds(std::max(wait, absl::ZeroDuration())));
}

void MetricsRegistry::LeaseExpired() { lease_expirations_->Increment(); }

void MetricsRegistry::SetJobCounts(const std::map<JobState, int64_t>& counts) {
  for (JobState s : {qnet::v1::QUEUED, qnet::v1::RUNNING, qnet::v1::SUCCEEDED, qnet::v1::FAILED,
                     qnet::v1::CANCELLED}) {
    auto it = counts.find(s);
    jobs_->Add({{"state", std::string(JobStateLabel(s))}})
        .Set(it == counts.end() ? 0.0 : static_cast<double>(it->second));
  }
}

void MetricsRegistry::SetWorkers(int busy, int idle) {
  workers_busy_->Set(busy);
  workers_idle_->Set(idle);
}

void MetricsRegistry::SetWorkerThroughput(const std::string& worker_id, double images_per_second) {
  worker_images_per_second_->Add({{"worker", worker_id}}).Set(images_per_second);
}

void MetricsRegistry::SetWorkerDeviceMemory(const std::string& worker_id, double bytes) {
  worker_device_memory_->Add({{"worker", worker_id}}).Set(bytes);
}

void MetricsRegistry::RemoveWorker(const std::string& worker_id) {
  const prometheus::Labels labels = {{"worker", worker_id}};
  if (worker_images_per_second_->Has(labels)) {
    worker_images_per_second_->Remove(&worker_images_per_second_->Add(labels));
  }
  if (worker_device_memory_->Has(labels)) {
    worker_device_memory_->Remove(&worker_device_memory_->Add(labels));
  }
}

void MetricsRegistry::BlobBytes(BlobDirection direction, int64_t bytes) {
  if (bytes <= 0) return;
  (direction == BlobDirection::kUpload ? blob_upload_bytes_ : blob_download_bytes_)
      ->Increment(static_cast<double>(bytes));
}

MetricsRegistry::MethodMetrics& MetricsRegistry::ForMethod(absl::string_view method) {
  {
    absl::ReaderMutexLock lock(&methods_mu_);
    auto it = methods_.find(method);
    if (it != methods_.end()) return *it->second;
  }
  absl::MutexLock lock(&methods_mu_);
  auto& slot = methods_[method];
  if (slot == nullptr) {
    slot = std::make_unique<MethodMetrics>();
    slot->latency = &grpc_latency_->Add({{"method", std::string(method)}}, GrpcBuckets());
  }
  return *slot;
}

void MetricsRegistry::GrpcRequest(absl::string_view method, int code, absl::Duration latency) {
  if (!method.empty() && method.front() == '/') method.remove_prefix(1);
  // A label per made-up method name would let any client grow /metrics without bound.
  if (!IsServedGrpcMethod(method)) method = kUnknownGrpcMethod;
  if (code < 0 || code >= static_cast<int>(kCodeNames.size())) code = 2;  // UNKNOWN
  MethodMetrics& m = ForMethod(method);
  prometheus::Counter* counter = m.by_code[code].load(std::memory_order_acquire);
  if (counter == nullptr) {
    // Family::Add is idempotent for equal labels, so a race here yields the same counter.
    counter = &grpc_requests_->Add(
        {{"method", std::string(method)}, {"code", std::string(kCodeNames[code])}});
    m.by_code[code].store(counter, std::memory_order_release);
  }
  counter->Increment();
  m.latency->Observe(absl::ToDoubleSeconds(latency));
}

void MetricsRegistry::SetCollectHook(std::function<void()> hook) {
  std::lock_guard<std::mutex> lock(hook_mu_);
  collect_hook_ = std::move(hook);
}

std::string MetricsRegistry::Serialize() {
  std::lock_guard<std::mutex> lock(hook_mu_);
  if (collect_hook_) collect_hook_();
  std::ostringstream out;
  prometheus::TextSerializer().Serialize(out, registry_->Collect());
  return out.str();
}

}  // namespace qnet::server
