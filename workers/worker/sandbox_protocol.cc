#include "workers/worker/sandbox_protocol.h"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace qnet::worker {
namespace {

uint32_t DecodeLength(const char* p) {
  const auto* b = reinterpret_cast<const unsigned char*>(p);
  return uint32_t{b[0]} | uint32_t{b[1]} << 8 | uint32_t{b[2]} << 16 | uint32_t{b[3]} << 24;
}

absl::Status TooLarge(uint64_t size) {
  return absl::OutOfRangeError(
      absl::StrCat("sandbox frame of ", size, " bytes exceeds ", kMaxFrameBytes));
}

// Reads exactly `size` bytes; OUT_OF_RANGE when the stream ends first.
absl::Status ReadExactly(int fd, char* out, size_t size) {
  size_t done = 0;
  while (done < size) {
    const ssize_t n = read(fd, out + done, size - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return absl::UnavailableError(absl::StrCat("sandbox read: ", std::strerror(errno)));
    if (n == 0) return absl::OutOfRangeError("sandbox channel closed");
    done += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status WriteFrame(int fd, const google::protobuf::MessageLite& message) {
  const size_t size = message.ByteSizeLong();
  if (size > kMaxFrameBytes) return TooLarge(size);
  std::string frame(4, '\0');
  for (int i = 0; i < 4; ++i) frame[i] = static_cast<char>((size >> (8 * i)) & 0xff);
  if (!message.AppendToString(&frame)) return absl::InternalError("cannot serialize a frame");
  size_t done = 0;
  while (done < frame.size()) {
    const ssize_t n = send(fd, frame.data() + done, frame.size() - done, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return absl::UnavailableError(absl::StrCat("sandbox write: ", std::strerror(errno)));
    done += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

absl::Status ReadFrame(int fd, google::protobuf::MessageLite& message) {
  char header[4];
  absl::Status s = ReadExactly(fd, header, sizeof header);
  if (!s.ok()) return s;
  const uint32_t size = DecodeLength(header);
  if (size > kMaxFrameBytes) return TooLarge(size);
  std::string payload(size, '\0');
  s = ReadExactly(fd, payload.data(), size);
  if (!s.ok()) return absl::DataLossError("sandbox channel closed mid-frame");
  if (!message.ParseFromString(payload)) return absl::DataLossError("malformed sandbox frame");
  return absl::OkStatus();
}

sandbox::Job JobToProto(const engine::JobRun& run) {
  const engine::RunContext& ctx = run.context;
  sandbox::Job job;
  *job.mutable_spec() = run.spec;
  job.set_model_path(ctx.model_path);
  job.set_dataset_dir(ctx.dataset_dir);
  job.set_dataset_format(ctx.dataset_format);
  job.set_dataset_memory_budget_bytes(ctx.dataset_memory_budget_bytes);
  job.set_loader_threads(ctx.loader_threads);
  job.set_device(ctx.device);
  job.set_out_dir(ctx.out_dir);
  job.set_checkpoint_dir(ctx.checkpoint_dir);
  job.set_float_model_path(ctx.float_model_path);
  return job;
}

engine::JobRun JobFromProto(const sandbox::Job& job) {
  engine::JobRun run;
  run.spec = job.spec();
  engine::RunContext& ctx = run.context;
  ctx.model_path = job.model_path();
  ctx.dataset_dir = job.dataset_dir();
  ctx.dataset_format = job.dataset_format();
  ctx.dataset_memory_budget_bytes = job.dataset_memory_budget_bytes();
  ctx.loader_threads = job.loader_threads();
  ctx.device = job.device();
  ctx.out_dir = job.out_dir();
  ctx.checkpoint_dir = job.checkpoint_dir();
  ctx.float_model_path = job.float_model_path();
  return run;
}

absl::StatusOr<std::optional<std::string>> FrameBuffer::Next() {
  if (bytes_.size() < 4) return std::nullopt;
  const uint32_t size = DecodeLength(bytes_.data());
  if (size > kMaxFrameBytes) return TooLarge(size);
  if (bytes_.size() < 4 + size_t{size}) return std::nullopt;
  std::string payload = bytes_.substr(4, size);
  bytes_.erase(0, 4 + size_t{size});
  return payload;
}

}  // namespace qnet::worker
