#include "workers/worker/worker_convert.h"

namespace qnet::worker {

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
  if (m.torchscript_top1) out.set_torchscript_top1(*m.torchscript_top1);
  if (m.onnx_top1) out.set_onnx_top1(*m.onnx_top1);
  *out.mutable_effective_spec() = m.effective_spec;
  v1::InputNormalization* norm = out.mutable_input_normalization();
  norm->mutable_mean()->Add(m.input_mean.begin(), m.input_mean.end());
  norm->mutable_std()->Add(m.input_std.begin(), m.input_std.end());
  for (const std::string& name : m.class_names) out.add_class_names(name);
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

engine::ProgressEvent ProgressFromProto(const v1::Progress& p) {
  engine::ProgressEvent event;
  event.phase = p.phase();
  event.epoch = p.epoch();
  event.total_epochs = p.total_epochs();
  event.step = p.step();
  event.steps_per_epoch = p.steps_per_epoch();
  event.loss = p.loss();
  event.temperature = p.temperature();
  event.accuracy = p.accuracy();
  event.images_per_second = p.images_per_second();
  event.eta_seconds = p.eta_seconds();
  event.device_memory_bytes = p.device_memory_bytes();
  return event;
}

engine::JobMetrics MetricsFromProto(const v1::Metrics& m) {
  engine::JobMetrics out;
  out.float_top1 = m.float_top1();
  out.float_top5 = m.float_top5();
  out.quantized_top1 = m.quantized_top1();
  out.quantized_top5 = m.quantized_top5();
  out.soft_top1 = m.soft_top1();
  out.hard_top1 = m.hard_top1();
  out.float_size_bytes = m.float_size_bytes();
  out.packed_size_bytes = m.packed_size_bytes();
  out.compression_ratio = m.compression_ratio();
  out.device = m.device();
  if (m.has_torchscript_top1()) out.torchscript_top1 = m.torchscript_top1();
  if (m.has_onnx_top1()) out.onnx_top1 = m.onnx_top1();
  out.effective_spec = m.effective_spec();
  out.input_mean.assign(m.input_normalization().mean().begin(),
                        m.input_normalization().mean().end());
  out.input_std.assign(m.input_normalization().std().begin(), m.input_normalization().std().end());
  out.class_names.assign(m.class_names().begin(), m.class_names().end());
  for (const v1::EpochMetrics& e : m.epochs()) {
    out.epochs.push_back({.epoch = e.epoch(),
                          .phase = e.phase(),
                          .train_loss = e.train_loss(),
                          .temperature = e.temperature(),
                          .soft_top1 = e.soft_top1(),
                          .hard_top1 = e.hard_top1()});
  }
  return out;
}

}  // namespace qnet::worker
