#include "workers/engine/data/batch_pipeline.h"

#include <algorithm>
#include <atomic>
#include <utility>

#include <c10/util/ParallelGuard.h>

#include "absl/strings/str_cat.h"
#include "workers/engine/torch_error.h"

namespace qnet::engine {

int LoaderThreads(int requested) {
  if (requested > 0) return requested;
  return static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
}

absl::Status ParallelFor(int64_t n, int threads, const std::function<absl::Status(int64_t)>& fn) {
  std::atomic<int64_t> next{0};
  std::mutex mu;
  int64_t failed_at = n;
  absl::Status first;
  auto work = [&] {
    c10::ParallelGuard serial(true);
    torch::NoGradGuard no_grad;
    for (int64_t i = next++; i < n; i = next++) {
      absl::Status s;
      try {
        s = fn(i);
      } catch (const std::exception& e) {
        s = absl::InternalError(TorchErrorText(e));
      }
      if (s.ok()) continue;
      std::lock_guard<std::mutex> lock(mu);
      if (i < failed_at) {
        failed_at = i;
        first = std::move(s);
      }
    }
  };
  const auto count =
      static_cast<int>(std::min<int64_t>(std::max(1, threads), std::max<int64_t>(1, n)));
  std::vector<std::thread> pool;
  for (int t = 1; t < count; ++t) pool.emplace_back(work);
  work();
  for (std::thread& t : pool) t.join();
  return first;
}

BatchPipeline::BatchPipeline(int64_t samples, int64_t batch_size, std::vector<int64_t> sample_shape,
                             Prepare prepare, int threads, int depth)
    : samples_(std::max<int64_t>(0, samples)),
      batch_size_(std::max<int64_t>(1, batch_size)),
      depth_(std::max(1, depth)),
      sample_shape_(std::move(sample_shape)),
      prepare_(std::move(prepare)) {
  const int count = std::max(1, threads);
  threads_.reserve(count);
  for (int i = 0; i < count; ++i) threads_.emplace_back([this] { Work(); });
}

BatchPipeline::~BatchPipeline() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  work_cv_.notify_all();
  for (std::thread& t : threads_) t.join();
}

int64_t BatchPipeline::BatchRows(int64_t batch) const {
  return std::min(batch_size_, samples_ - batch * batch_size_);
}

void BatchPipeline::Work() {
  // The pool's threads are the parallelism: ATen ops inside them run single-threaded instead of
  // each starting a team of their own next to the training step's.
  c10::ParallelGuard serial(true);
  // Not InferenceMode: its tensors could not be saved for the training step's backward.
  torch::NoGradGuard no_grad;
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    work_cv_.wait(lock, [&] {
      return stop_ || next_position_ >= samples_ || next_position_ / batch_size_ < taken_ + depth_;
    });
    if (stop_ || next_position_ >= samples_) return;
    const int64_t position = next_position_++;
    const int64_t batch = position / batch_size_;
    Pending& pending = pending_[batch];
    if (!pending.batch.defined()) {
      std::vector<int64_t> shape = {BatchRows(batch)};
      shape.insert(shape.end(), sample_shape_.begin(), sample_shape_.end());
      pending.batch = torch::empty(shape, torch::kFloat);
      pending.remaining = shape[0];
    }
    torch::Tensor row = pending.batch[position - batch * batch_size_];
    lock.unlock();
    absl::Status status;
    try {
      status = prepare_(position, row);
    } catch (const std::exception& e) {
      status = absl::InternalError(absl::StrCat("preparing a batch: ", TorchErrorText(e)));
    }
    lock.lock();
    Pending& done = pending_[batch];
    if (!status.ok() && done.status.ok()) done.status = std::move(status);
    if (--done.remaining == 0) done_cv_.notify_all();
  }
}

std::optional<absl::StatusOr<torch::Tensor>> BatchPipeline::Take() {
  std::unique_lock<std::mutex> lock(mu_);
  const int64_t batch = taken_;
  if (batch * batch_size_ >= samples_) return std::nullopt;
  done_cv_.wait(lock, [&] {
    auto it = pending_.find(batch);
    return it != pending_.end() && it->second.remaining == 0;
  });
  Pending pending = std::move(pending_[batch]);
  pending_.erase(batch);
  ++taken_;
  lock.unlock();
  work_cv_.notify_all();
  if (!pending.status.ok()) return absl::StatusOr<torch::Tensor>(pending.status);
  return absl::StatusOr<torch::Tensor>(std::move(pending.batch));
}

}  // namespace qnet::engine
