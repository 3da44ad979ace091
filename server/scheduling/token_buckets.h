// TokenBuckets: one token bucket per key (the submit-rate quota, one bucket per identity). A
// bucket holds up to `per_minute` tokens, starts full and refills at `per_minute` tokens a minute,
// so a key may burst a minute's worth and then keeps to the rate. Time comes from the injected
// Clock, so tests move it by hand.
//
//   TokenBuckets buckets(/*per_minute=*/60, &clock);
//   if (std::optional<absl::Duration> wait = buckets.Take("alice")) { ... refused; retry in *wait }
#ifndef QNET_SERVER_SCHEDULING_TOKEN_BUCKETS_H_
#define QNET_SERVER_SCHEDULING_TOKEN_BUCKETS_H_

#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/scheduling/clock.h"

namespace qnet::server {

class TokenBuckets {
 public:
  // `clock` must outlive the buckets; per_minute > 0.
  TokenBuckets(double per_minute, const Clock* clock) : per_minute_(per_minute), clock_(clock) {}

  // Takes a token from `key`'s bucket: nullopt when one was there, else how long until the next.
  std::optional<absl::Duration> Take(absl::string_view key);
  double per_minute() const { return per_minute_; }

 private:
  struct Bucket {
    double tokens = 0;
    absl::Time updated;
  };

  const double per_minute_;
  const Clock* const clock_;
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, Bucket> buckets_ ABSL_GUARDED_BY(mu_);
};

}  // namespace qnet::server

#endif  // QNET_SERVER_SCHEDULING_TOKEN_BUCKETS_H_
