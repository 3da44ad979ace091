// How much one job may ask for: its priority and the work it costs (epochs, batch size, samples).
// The schema (job_spec.h) bounds every setting; these bounds are what a process is willing to
// spend on one job. qnetd narrows them to kServiceJobLimits, which its operator may change (flags
// --max-job-*); `qnet-worker run` and the engine take kSchemaJobLimits, so a job any server
// accepted also runs. Dependency-free, so qnet_server.h can hold them in its options.
//
//   qnet::job::JobLimits limits = qnet::job::kServiceJobLimits;
//   limits.max_epochs = 50;  // --max-job-epochs 50
#ifndef QNET_COMMON_JOB_JOB_LIMITS_H_
#define QNET_COMMON_JOB_JOB_LIMITS_H_

#include <cstdint>

namespace qnet::job {

struct JobLimits {
  int max_priority;     // priority in -max_priority..max_priority
  int max_epochs;       // training.epochs + training.pretrain_epochs, defaults resolved
  int max_batch_size;   // training.batch_size
  int64_t max_samples;  // training.max_train_samples and training.max_test_samples
};

// The widest any process accepts: epochs and batch size at the schema's own limits.
inline constexpr JobLimits kSchemaJobLimits{1000000, 2000, 65536, int64_t{1} << 40};
// qnetd's defaults: a few hundred epochs over at most 100 million images per split.
inline constexpr JobLimits kServiceJobLimits{100, 500, 4096, 100000000};

}  // namespace qnet::job

#endif  // QNET_COMMON_JOB_JOB_LIMITS_H_
