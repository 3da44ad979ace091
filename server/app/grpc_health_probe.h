// GrpcHealthProbe: asks qnetd's own gRPC health service (grpc.health.v1.Health/Check) over a new
// connection, as a client would, so /healthz is 503 when gRPC stops accepting connections (for
// example out of file descriptors) or stops serving, not only while draining. Answers are reused
// for `max_age` so a busy /healthz does not open a connection per request, and a check that
// finds a probe in flight answers with the previous result instead of waiting for it.
//
//   GrpcHealthProbe probe("127.0.0.1:50051");
//   absl::Status s = probe.Check();  // OK, or UNAVAILABLE with what went wrong
#ifndef QNET_SERVER_APP_GRPC_HEALTH_PROBE_H_
#define QNET_SERVER_APP_GRPC_HEALTH_PROBE_H_

#include <mutex>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace qnet::server {

class GrpcHealthProbe {
 public:
  explicit GrpcHealthProbe(std::string target, absl::Duration timeout = absl::Seconds(2),
                           absl::Duration max_age = absl::Seconds(1));

  absl::Status Check();

 private:
  absl::Status Probe() const;

  const std::string target_;
  const absl::Duration timeout_;
  const absl::Duration max_age_;
  std::mutex probe_mu_;  // held while probing: one probe at a time
  std::mutex result_mu_;
  absl::Time checked_ = absl::InfinitePast();
  absl::Status last_ = absl::UnavailableError("gRPC health not checked yet");
};

}  // namespace qnet::server

#endif  // QNET_SERVER_APP_GRPC_HEALTH_PROBE_H_
