// The protocol between `qnet-worker serve` and its sandboxed child (sandbox.h): the messages of
// workers/worker/sandbox.proto in length-prefixed frames on a stream socket. A frame is a 4-byte
// little-endian payload length, then the serialized message. The child writes and reads blocking;
// the parent reads without blocking through FrameBuffer, so a child that stops mid-frame cannot
// stall it.
//
//   absl::Status s = WriteFrame(fd, message);   // either end
//   FrameBuffer buffer;                          // parent: feed what read() returned
//   buffer.Append(bytes, n);
//   while (auto frame = buffer.Next()) { if (!frame->has_value()) break; ... }
#ifndef QNET_WORKERS_WORKER_SANDBOX_PROTOCOL_H_
#define QNET_WORKERS_WORKER_SANDBOX_PROTOCOL_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include <google/protobuf/message_lite.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "workers/engine/job_run.h"
#include "workers/worker/sandbox.pb.h"

namespace qnet::worker {

// Frames above this are refused: a result with its metrics is a few KiB.
inline constexpr uint32_t kMaxFrameBytes = 16u << 20;

// Writes all of the frame, retrying short writes; never raises SIGPIPE.
absl::Status WriteFrame(int fd, const google::protobuf::MessageLite& message);

// Reads exactly one frame into `message`. OUT_OF_RANGE at a clean end of stream before a frame.
absl::Status ReadFrame(int fd, google::protobuf::MessageLite& message);

// The job crosses to the child whole: spec and RunContext.
sandbox::Job JobToProto(const engine::JobRun& run);
engine::JobRun JobFromProto(const sandbox::Job& job);

class FrameBuffer {
 public:
  void Append(const char* data, size_t size) { bytes_.append(data, size); }
  // The next complete frame's payload; nullopt while incomplete; an error for an oversized one.
  absl::StatusOr<std::optional<std::string>> Next();

 private:
  std::string bytes_;
};

}  // namespace qnet::worker

#endif  // QNET_WORKERS_WORKER_SANDBOX_PROTOCOL_H_
