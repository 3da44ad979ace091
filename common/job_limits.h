// Limits on job settings that both qnetd (before it queues a job) and the engine (before it runs
// one) enforce. One definition, so that a job the server accepts cannot then fail on a worker for
// a setting out of range. Where the server is deliberately stricter (epochs, learning rate) the
// limits stay with it.
//
//   if (slope > qnet::kMaxTemperatureSlope) return InvalidArgument(...);
#ifndef QNET_COMMON_JOB_LIMITS_H_
#define QNET_COMMON_JOB_LIMITS_H_

namespace qnet {

// Temperature growth per epoch. The schedule's T is capped at 2000 (Recipe) anyway, so a steeper
// slope would only reach the cap in the first epoch.
inline constexpr double kMaxTemperatureSlope = 2000;

}  // namespace qnet

#endif  // QNET_COMMON_JOB_LIMITS_H_
