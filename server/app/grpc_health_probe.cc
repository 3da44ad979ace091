#include "server/app/grpc_health_probe.h"

#include <utility>
#include <vector>

#include <grpcpp/create_channel.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/channel_arguments.h>

#include "absl/strings/str_cat.h"
#include "common/handoff.h"

namespace qnet::server {
namespace {

// HealthCheckResponse{status: SERVING} as protobuf encodes it (field 1, varint 1). The health
// protocol has no generated stub in gRPC's C++ library, so the probe compares bytes.
constexpr char kServing[] = "\x08\x01";

}  // namespace

GrpcHealthProbe::GrpcHealthProbe(std::string target, absl::Duration timeout, absl::Duration max_age)
    : target_(std::move(target)), timeout_(timeout), max_age_(max_age) {}

absl::Status GrpcHealthProbe::Check() {
  {
    std::lock_guard<std::mutex> lock(result_mu_);
    if (absl::Now() - checked_ < max_age_) return last_;
  }
  std::unique_lock<std::mutex> probing(probe_mu_, std::try_to_lock);
  if (!probing.owns_lock()) {
    std::lock_guard<std::mutex> lock(result_mu_);
    return last_;
  }
  absl::Status status = Probe();
  std::lock_guard<std::mutex> lock(result_mu_);
  last_ = status;
  checked_ = absl::Now();
  return status;
}

absl::Status GrpcHealthProbe::Probe() const {
  grpc::ChannelArguments args;
  // A connection of its own: a shared, already connected subchannel would hide a listener that
  // no longer accepts.
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  grpc::GenericStub stub(
      grpc::CreateCustomChannel(target_, grpc::InsecureChannelCredentials(), args));
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + timeout_));
  grpc::Slice empty("", 0);  // HealthCheckRequest{service: ""}: the whole server
  grpc::ByteBuffer request(&empty, 1);
  grpc::ByteBuffer response;
  Handoff<grpc::Status> done;
  stub.UnaryCall(&ctx, "/grpc.health.v1.Health/Check", grpc::StubOptions(), &request, &response,
                 [&done](grpc::Status s) { done.Set(std::move(s)); });
  const grpc::Status status = done.Wait();
  if (!status.ok()) {
    return absl::UnavailableError(
        absl::StrCat("gRPC health check on ", target_, " failed: ", status.error_message()));
  }
  std::vector<grpc::Slice> slices;
  std::string bytes;
  if (response.Dump(&slices).ok()) {
    for (const grpc::Slice& s : slices) {
      bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
    }
  }
  if (bytes != std::string(kServing, 2)) {
    return absl::UnavailableError(absl::StrCat("gRPC on ", target_, " is not serving"));
  }
  return absl::OkStatus();
}

}  // namespace qnet::server
