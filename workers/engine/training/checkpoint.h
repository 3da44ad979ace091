// Training checkpoints: a named set of tensors plus a JSON string of metadata, written atomically
// (temporary file, then rename) as checkpoint_dir/ckpt-<epoch>.pt, and found again on resume.
// The trainer decides what goes in (model tensors, latents, quantizer parameters, momentum
// buffers, epoch and metrics so far); this file only stores and finds them.
//
//   Checkpoint c;
//   c.tensors["model.fc1.bias"] = ...;
//   c.meta = R"({"epoch": 3})";
//   absl::Status s = SaveCheckpoint(CheckpointPath(dir, 3), c);
//   absl::StatusOr<std::optional<LoadedCheckpoint>> latest = LoadLatestCheckpoint(dir);
#ifndef QNET_WORKERS_ENGINE_TRAINING_CHECKPOINT_H_
#define QNET_WORKERS_ENGINE_TRAINING_CHECKPOINT_H_

#include <map>
#include <optional>
#include <string>

#include <torch/torch.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace qnet::engine {

struct Checkpoint {
  std::map<std::string, torch::Tensor> tensors;  // saved on the CPU
  std::string meta;                              // JSON
};

struct LoadedCheckpoint {
  std::string path;
  int epoch = 0;
  Checkpoint checkpoint;
};

std::string CheckpointPath(const std::string& dir, int epoch);

// Writes `path` atomically (a crash leaves the previous file or none, never a torn one).
absl::Status SaveCheckpoint(const std::string& path, const Checkpoint& checkpoint);

// INVALID_ARGUMENT naming the file when it is not a checkpoint; NOT_FOUND when missing.
absl::StatusOr<Checkpoint> LoadCheckpoint(const std::string& path);

// The newest ckpt-<N>.pt in `dir` that loads (a damaged newer one is skipped); nullopt when none
// (or when dir is empty or missing).
std::optional<LoadedCheckpoint> LoadLatestCheckpoint(const std::string& dir);

}  // namespace qnet::engine

#endif  // QNET_WORKERS_ENGINE_TRAINING_CHECKPOINT_H_
