#include "workers/engine/export/preprocessing_record.h"

#include <exception>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/job/job_spec.h"
#include "workers/engine/torch_error.h"

namespace qnet::engine {

nlohmann::json PreprocessingJson(const JobMetrics& m) {
  const v1::JobSpec& spec = m.effective_spec;
  const v1::Preprocessing& p = spec.preprocessing();
  std::vector<int> shape;
  if (absl::StatusOr<job::InputShape> s = job::ParseInputShape(spec.input_shape()); s.ok()) {
    shape = {s->channels, s->height, s->width};
  }
  nlohmann::json augmentation = {{"crop", m.train_crop}, {"horizontal_flip", p.horizontal_flip()}};
  if (m.train_crop == "random_resized") {
    augmentation["scale"] = {p.crop_scale_min(), p.crop_scale_max()};
    augmentation["ratio"] = {3.0 / 4.0, 4.0 / 3.0};
  }
  nlohmann::json test_split = {{"source", "dataset"}};
  if (m.holdout) {
    test_split = {{"source", "holdout"},
                  {"fraction", p.holdout_fraction()},
                  {"seed", spec.training().seed()}};
  }
  return {
      {"input_shape", shape},
      {"pixel_scale", 1.0 / 255.0},
      {"resize", {{"size", p.resize_size()}, {"interpolation", "bilinear"}, {"antialias", true}}},
      {"center_crop", shape.size() == 3 ? nlohmann::json{shape[1], shape[2]} : nlohmann::json()},
      {"channel_repeat", m.channel_repeat},
      {"mean", m.input_mean},
      {"std", m.input_std},
      {"train_augmentation", augmentation},
      {"test_split", test_split}};
}

absl::Status RecordPreprocessing(torch::jit::Module& module, const JobMetrics& metrics) {
  try {
    module.register_attribute(kPreprocessingAttr, c10::StringType::get(),
                              PreprocessingJson(metrics).dump());
    module.register_attribute(kClassNamesAttr, c10::ListType::ofStrings(),
                              c10::List<std::string>(metrics.class_names));
    return absl::OkStatus();
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot record the preprocessing on the model: ", TorchErrorText(e)));
  }
}

}  // namespace qnet::engine
