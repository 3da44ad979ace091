// The short job engine tests put a model through: no pre-training, one QN epoch in batches of 4,
// seed 1, on the CPU. Over a few dozen images every phase (calibration, QN training, batch-norm
// re-estimation, the exports the spec asks for) runs in seconds.
//
//   JobRun run = ShortJob(model_path, /*bits=*/2, WriteSyntheticIdx(dir, 20, 8), "idx", out_dir);
//   run.spec.add_export_formats("onnx");
//   absl::StatusOr<JobResult> result = RunJob(run, {});
#ifndef QNET_TESTS_ENGINE_SHORT_JOB_H_
#define QNET_TESTS_ENGINE_SHORT_JOB_H_

#include <string>

#include "workers/engine/job_run.h"

namespace qnet::testing {

// `bits` for weights and activations; the dataset is `dataset_dir` in `dataset_format`.
inline engine::JobRun ShortJob(const std::string& model, int bits, const std::string& dataset_dir,
                               const std::string& dataset_format, const std::string& out_dir) {
  engine::JobRun run;
  run.spec.set_model(model);
  run.spec.set_dataset("synthetic-" + dataset_format);
  run.spec.set_weight_bits(bits);
  run.spec.set_activation_bits(bits);
  v1::TrainingSettings& t = *run.spec.mutable_training();
  t.set_pretrain_epochs(0);
  t.set_epochs(1);
  t.set_batch_size(4);
  t.set_seed(1);
  run.context.dataset_dir = dataset_dir;
  run.context.dataset_format = dataset_format;
  run.context.device = "cpu";
  run.context.out_dir = out_dir;
  return run;
}

}  // namespace qnet::testing

#endif  // QNET_TESTS_ENGINE_SHORT_JOB_H_
