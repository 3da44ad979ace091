// How `qnet-worker serve` ships engine checkpoints through the server. The engine writes
// checkpoint_dir/ckpt-<epoch>.pt and finds the newest again by that file name (checkpoint.h), but
// the server keeps only a blob digest per job (Job.checkpoint_digest). So the uploaded blob is an
// envelope that carries the file name with the bytes:
//
//   "qnet-checkpoint/1\n" <file name> "\n" <the checkpoint file's bytes>
//
// and the worker of the next attempt unpacks it under its original name into a fresh
// checkpoint_dir, from which RunJob resumes.
//
//   PackCheckpoint("/w/ckpt/ckpt-3.pt", "/w/upload/ckpt-3.envelope");   // then upload it
//   absl::StatusOr<std::string> p = UnpackCheckpoint(cached_blob, "/w2/ckpt");  //
//   "/w2/ckpt/ckpt-3.pt"
#ifndef QNET_WORKERS_WORKER_WORKER_CHECKPOINT_H_
#define QNET_WORKERS_WORKER_WORKER_CHECKPOINT_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace qnet::worker {

// Writes the envelope of `checkpoint_path` (named by its base name) to `envelope_path`.
absl::Status PackCheckpoint(const std::string& checkpoint_path, const std::string& envelope_path);

// Writes the checkpoint inside `envelope_path` to `dir`/<its name> and returns that path.
// INVALID_ARGUMENT for a blob that is not an envelope or names an unsafe file.
absl::StatusOr<std::string> UnpackCheckpoint(const std::string& envelope_path,
                                             const std::string& dir);

}  // namespace qnet::worker

#endif  // QNET_WORKERS_WORKER_WORKER_CHECKPOINT_H_
