#include "server/scheduling/token_buckets.h"

#include <algorithm>

namespace qnet::server {

std::optional<absl::Duration> TokenBuckets::Take(absl::string_view key) {
  const absl::Time now = clock_->Now();
  absl::MutexLock lock(&mu_);
  auto [it, fresh] = buckets_.try_emplace(key);
  Bucket& b = it->second;
  if (fresh) {
    b.tokens = per_minute_;
  } else {
    // A clock that steps back refills nothing.
    const double minutes = std::max(0.0, absl::ToDoubleMinutes(now - b.updated));
    b.tokens = std::min(per_minute_, b.tokens + minutes * per_minute_);
  }
  b.updated = now;
  if (b.tokens >= 1) {
    b.tokens -= 1;
    return std::nullopt;
  }
  return absl::Minutes((1 - b.tokens) / per_minute_);
}

}  // namespace qnet::server
