// Pools of threads for the input pipeline. BatchPipeline prepares the batches of one epoch ahead of
// the consumer on a pool of threads: each thread claims the next sample position, prepares it into
// its batch's tensor and, once a batch is complete, the consumer may take it. At most `depth`
// batches are in preparation or waiting (a bounded queue), so memory stays bounded while the
// threads stay ahead of a training step.
//
//   BatchPipeline pipeline(n, 128, {3, 32, 32}, prepare, /*threads=*/4, /*depth=*/3);
//   while (auto batch = pipeline.Take()) { ... }  // batches in position order
#ifndef QNET_WORKERS_ENGINE_DATA_BATCH_PIPELINE_H_
#define QNET_WORKERS_ENGINE_DATA_BATCH_PIPELINE_H_

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include <torch/torch.h>

#include "absl/status/statusor.h"

namespace qnet::engine {

// `requested` threads, or one per core when 0.
int LoaderThreads(int requested);

// Runs fn(i) for i in [0, n) on `threads` threads (the caller's among them), ATen ops inside
// single-threaded; the error of the lowest failing i, if any.
absl::Status ParallelFor(int64_t n, int threads, const std::function<absl::Status(int64_t)>& fn);

class BatchPipeline {
 public:
  // Writes the sample at `position` (0-based over the epoch) into `out`, a float [C, H, W] row of
  // its batch. Called concurrently from the pool's threads.
  using Prepare = std::function<absl::Status(int64_t position, torch::Tensor& out)>;

  BatchPipeline(int64_t samples, int64_t batch_size, std::vector<int64_t> sample_shape,
                Prepare prepare, int threads, int depth);
  ~BatchPipeline();  // stops the threads once their current sample is done
  BatchPipeline(const BatchPipeline&) = delete;
  BatchPipeline& operator=(const BatchPipeline&) = delete;

  // The next batch in order, waiting until it is complete; nullopt after the last one. A sample
  // that failed to prepare fails its batch with the first error.
  std::optional<absl::StatusOr<torch::Tensor>> Take();

 private:
  struct Pending {
    torch::Tensor batch;
    int64_t remaining = 0;
    absl::Status status;
  };
  void Work();
  int64_t BatchRows(int64_t batch) const;

  const int64_t samples_, batch_size_, depth_;
  const std::vector<int64_t> sample_shape_;
  const Prepare prepare_;
  std::mutex mu_;
  std::condition_variable work_cv_, done_cv_;
  int64_t next_position_ = 0;  // the next sample a thread claims
  int64_t taken_ = 0;          // batches handed to the consumer
  bool stop_ = false;
  std::map<int64_t, Pending> pending_;  // batch number -> batch in preparation or complete
  std::vector<std::thread> threads_;
};

}  // namespace qnet::engine

#endif  // QNET_WORKERS_ENGINE_DATA_BATCH_PIPELINE_H_
