// Clock: where the scheduler reads the time. Lease expiry and job timestamps come from it, so tests
// inject a fake clock and move time by hand instead of sleeping.
//
//   SystemClock clock;
//   Scheduler scheduler(&store, &clock, options);
//   // in tests: FakeClock fake; ...; fake.Advance(absl::Seconds(31)); scheduler.ExpireLeases();
#ifndef QNET_SERVER_SCHEDULING_CLOCK_H_
#define QNET_SERVER_SCHEDULING_CLOCK_H_

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace qnet::server {

class Clock {
 public:
  virtual ~Clock() = default;
  virtual absl::Time Now() const = 0;
};

// The wall clock.
class SystemClock final : public Clock {
 public:
  absl::Time Now() const override { return absl::Now(); }
};

}  // namespace qnet::server

#endif  // QNET_SERVER_SCHEDULING_CLOCK_H_
