// Fuzz target: ListJobs page tokens (server/scheduling/page_token.h), which clients hand back
// unchecked. Any text decodes to a positive job seq or an error, for every state filter; a token
// decodes only under the filter it was issued for; and the first 9 bytes read as a state and a
// seq must survive EncodePageToken -> DecodePageToken.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "absl/strings/string_view.h"
#include "server/scheduling/page_token.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace qnet::server;
  const absl::string_view token(reinterpret_cast<const char*>(data), size);
  int decoded_under = 0;
  for (int s = qnet::v1::JobState_MIN; s <= qnet::v1::JobState_MAX; ++s) {
    if (!qnet::v1::JobState_IsValid(s)) continue;
    absl::StatusOr<int64_t> seq = DecodePageToken(token, static_cast<qnet::v1::JobState>(s));
    if (!seq.ok()) continue;
    if (token.empty() ? *seq != 0 : *seq <= 0) std::abort();
    decoded_under += token.empty() ? 0 : 1;
  }
  if (decoded_under > 1) std::abort();  // a token is bound to one filter

  if (size < 1 + sizeof(int64_t)) return 0;
  const auto state = static_cast<qnet::v1::JobState>(
      data[0] % (qnet::v1::JobState_MAX - qnet::v1::JobState_MIN + 1) + qnet::v1::JobState_MIN);
  if (!qnet::v1::JobState_IsValid(state)) return 0;
  int64_t seq;
  std::memcpy(&seq, data + 1, sizeof seq);
  const std::string encoded = EncodePageToken(state, seq);
  const absl::StatusOr<int64_t> round_trip = DecodePageToken(encoded, state);
  if (!round_trip.ok() || *round_trip != (seq > 0 ? seq : 0)) std::abort();
  return 0;
}
