// MetricsRegistry: every Prometheus metric qnetd exports, behind named methods so callers never
// build label sets by hand. Names follow Prometheus (base units, `_total` counters, no job ids as
// labels). The HTTP /metrics handler calls Serialize(), which first runs the collect hook so gauges
// that are cheap to compute on demand (jobs by state, workers) are fresh at every scrape.
//
//   MetricsRegistry metrics("0.1.0");
//   metrics.JobSubmitted();
//   metrics.GrpcRequest("qnet.v1.JobService/GetJob", /*code=*/0, absl::Microseconds(80));
//   metrics.SetCollectHook([&] { metrics.SetJobCounts(scheduler.Stats().jobs); });
//   std::string text = metrics.Serialize();  // Prometheus text format 0.0.4
#ifndef QNET_SERVER_METRICS_METRICS_REGISTRY_H_
#define QNET_SERVER_METRICS_METRICS_REGISTRY_H_

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"
#include "qnet/v1/job.pb.h"

namespace qnet::server {

class MetricsRegistry {
 public:
  enum class BlobDirection { kUpload, kDownload };

  explicit MetricsRegistry(absl::string_view version);
  MetricsRegistry(const MetricsRegistry&) = delete;
  MetricsRegistry& operator=(const MetricsRegistry&) = delete;

  // Jobs.
  void JobSubmitted();
  // outcome: SUCCEEDED, FAILED or CANCELLED; run_time: from first start to the end (if it ran).
  void JobFinished(qnet::v1::JobState outcome, std::optional<absl::Duration> run_time);
  void QueueWait(absl::Duration wait);
  void LeaseExpired();
  void SetJobCounts(const std::map<qnet::v1::JobState, int64_t>& counts);

  // Workers (seen by AcquireLease/Heartbeat within the last lease period).
  void SetWorkers(int busy, int idle);
  void SetWorkerThroughput(const std::string& worker_id, double images_per_second);
  void SetWorkerDeviceMemory(const std::string& worker_id, double bytes);
  void RemoveWorker(const std::string& worker_id);

  void BlobBytes(BlobDirection direction, int64_t bytes);

  // One finished RPC. `method` is "package.Service/Method"; `code` a grpc::StatusCode value.
  // Methods no linked service defines are all counted as method="unknown".
  void GrpcRequest(absl::string_view method, int code, absl::Duration latency);

  void SetCollectHook(std::function<void()> hook);
  // Runs the collect hook, then renders every metric in the Prometheus text format.
  std::string Serialize();

  prometheus::Registry& registry() { return *registry_; }

 private:
  struct MethodMetrics {
    prometheus::Histogram* latency = nullptr;
    std::array<std::atomic<prometheus::Counter*>, 17> by_code{};
  };
  MethodMetrics& ForMethod(absl::string_view method);

  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Counter* jobs_submitted_;
  prometheus::Family<prometheus::Counter>* jobs_finished_;
  prometheus::Family<prometheus::Gauge>* jobs_;
  prometheus::Histogram* queue_wait_;
  prometheus::Histogram* job_duration_;
  prometheus::Counter* lease_expirations_;
  prometheus::Gauge* workers_busy_;
  prometheus::Gauge* workers_idle_;
  prometheus::Family<prometheus::Gauge>* worker_images_per_second_;
  prometheus::Family<prometheus::Gauge>* worker_device_memory_;
  prometheus::Counter* blob_upload_bytes_;
  prometheus::Counter* blob_download_bytes_;
  prometheus::Family<prometheus::Counter>* grpc_requests_;
  prometheus::Family<prometheus::Histogram>* grpc_latency_;

  absl::Mutex methods_mu_;
  absl::flat_hash_map<std::string, std::unique_ptr<MethodMetrics>> methods_
      ABSL_GUARDED_BY(methods_mu_);

  std::mutex hook_mu_;  // also serializes scrapes
  std::function<void()> collect_hook_;
};

// "queued", "running", ... (the label value used for qnet_jobs{state}).
absl::string_view JobStateLabel(qnet::v1::JobState state);

}  // namespace qnet::server

#endif  // QNET_SERVER_METRICS_METRICS_REGISTRY_H_
