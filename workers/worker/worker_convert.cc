#include "workers/worker/worker_convert.h"

namespace qnet::worker {

engine::JobConfig JobConfigFromSpec(const v1::JobSpec& spec, const std::string& device) {
  engine::JobConfig config;
  config.model = spec.model();
  config.weight_bits = spec.weight_bits();
  config.activation_bits = spec.activation_bits();
  config.weight_levels.assign(spec.weight_levels().begin(), spec.weight_levels().end());
  config.export_formats.assign(spec.export_formats().begin(), spec.export_formats().end());
  const v1::InputNormalization& norm = spec.input_normalization();
  config.input_mean.assign(norm.mean().begin(), norm.mean().end());
  config.input_std.assign(norm.std().begin(), norm.std().end());

  const v1::TrainingSettings& t = spec.training();
  engine::TrainSettings& train = config.train;
  if (t.epochs() > 0) train.epochs = t.epochs();
  if (t.pretrain_epochs() > 0) train.pretrain_epochs = t.pretrain_epochs();
  if (t.batch_size() > 0) train.batch_size = t.batch_size();
  if (t.learning_rate() > 0) train.learning_rate = t.learning_rate();
  if (t.max_train_samples() > 0) train.max_train_samples = t.max_train_samples();
  if (t.max_test_samples() > 0) train.max_test_samples = t.max_test_samples();
  if (t.seed() > 0) train.seed = t.seed();
  if (t.temperature_slope() > 0) train.temperature_slope = t.temperature_slope();
  if (t.has_distill_weight()) train.distill_weight = t.distill_weight();
  train.quantize_first_last = t.quantize_first_last();
  train.learn_thresholds = t.learn_thresholds();
  if (!device.empty()) train.device = device;
  return config;
}

v1::Progress ProgressToProto(const engine::ProgressEvent& event) {
  v1::Progress p;
  p.set_phase(event.phase);
  p.set_epoch(event.epoch);
  p.set_total_epochs(event.total_epochs);
  p.set_step(event.step);
  p.set_steps_per_epoch(event.steps_per_epoch);
  p.set_loss(event.loss);
  p.set_temperature(event.temperature);
  p.set_accuracy(event.accuracy < 0 ? 0 : event.accuracy);
  p.set_images_per_second(event.images_per_second);
  p.set_eta_seconds(event.eta_seconds);
  p.set_device_memory_bytes(event.device_memory_bytes);
  return p;
}

v1::Metrics MetricsToProto(const engine::JobMetrics& m) {
  v1::Metrics out;
  out.set_float_top1(m.float_top1);
  out.set_float_top5(m.float_top5);
  out.set_quantized_top1(m.quantized_top1);
  out.set_quantized_top5(m.quantized_top5);
  out.set_soft_top1(m.soft_top1);
  out.set_hard_top1(m.hard_top1);
  out.set_float_size_bytes(m.float_size_bytes);
  out.set_packed_size_bytes(m.packed_size_bytes);
  out.set_compression_ratio(m.compression_ratio);
  out.set_device(m.device);
  v1::InputNormalization* norm = out.mutable_input_normalization();
  norm->mutable_mean()->Add(m.input_mean.begin(), m.input_mean.end());
  norm->mutable_std()->Add(m.input_std.begin(), m.input_std.end());
  for (const engine::EpochRecord& e : m.epochs) {
    v1::EpochMetrics* r = out.add_epochs();
    r->set_epoch(e.epoch);
    r->set_phase(e.phase);
    r->set_train_loss(e.train_loss);
    r->set_temperature(e.temperature);
    r->set_soft_top1(e.soft_top1);
    r->set_hard_top1(e.hard_top1);
  }
  return out;
}

}  // namespace qnet::worker
