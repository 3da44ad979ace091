// ListJobs page tokens: opaque to clients, they carry where the next page starts (a job seq)
// and the state filter they were issued for, so a token is never reused with another filter.
//
//   std::string token = EncodePageToken(qnet::v1::QUEUED, next_before_seq);
//   absl::StatusOr<int64_t> before_seq = DecodePageToken(token, qnet::v1::QUEUED);
#ifndef QNET_SERVER_SCHEDULING_PAGE_TOKEN_H_
#define QNET_SERVER_SCHEDULING_PAGE_TOKEN_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "qnet/v1/job.pb.h"

namespace qnet::server {

// "" when before_seq is 0 (no next page).
std::string EncodePageToken(qnet::v1::JobState state, int64_t before_seq);
// 0 for "" (the first page); INVALID_ARGUMENT for tokens this server did not issue for `state`.
absl::StatusOr<int64_t> DecodePageToken(absl::string_view token, qnet::v1::JobState state);

}  // namespace qnet::server

#endif  // QNET_SERVER_SCHEDULING_PAGE_TOKEN_H_
