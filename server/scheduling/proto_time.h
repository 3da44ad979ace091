// Conversions between absl::Time and google.protobuf.Timestamp for the job records.
//
//   *job.mutable_create_time() = ToTimestamp(clock.Now());
//   absl::Time t = FromTimestamp(job.create_time());
#ifndef QNET_SERVER_SCHEDULING_PROTO_TIME_H_
#define QNET_SERVER_SCHEDULING_PROTO_TIME_H_

#include "absl/time/time.h"
#include "google/protobuf/timestamp.pb.h"

namespace qnet::server {

inline google::protobuf::Timestamp ToTimestamp(absl::Time t) {
  google::protobuf::Timestamp ts;
  const int64_t nanos = absl::ToUnixNanos(t);
  int64_t seconds = nanos / 1000000000;
  int64_t rest = nanos % 1000000000;
  if (rest < 0) {
    rest += 1000000000;
    --seconds;
  }
  ts.set_seconds(seconds);
  ts.set_nanos(static_cast<int32_t>(rest));
  return ts;
}

inline absl::Time FromTimestamp(const google::protobuf::Timestamp& ts) {
  return absl::FromUnixSeconds(ts.seconds()) + absl::Nanoseconds(ts.nanos());
}

}  // namespace qnet::server

#endif  // QNET_SERVER_SCHEDULING_PROTO_TIME_H_
