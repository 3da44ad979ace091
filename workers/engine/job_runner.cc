#include "workers/engine/job_runner.h"

#include <algorithm>
#include <exception>
#include <filesystem>
#include <map>
#include <utility>

#include <torch/script.h>
#include <torch/torch.h>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/digest.h"
#include "common/input_normalization.h"
#include "common/job_limits.h"
#include "workers/engine/data.h"
#include "workers/engine/export.h"
#include "workers/engine/metrics_json.h"
#include "workers/engine/trainer.h"
#include "workers/engine/zoo.h"
#ifdef QNET_HAVE_ONNX
#include "workers/engine/export/onnx/onnx_export.h"
#include "workers/engine/torch_error.h"
#endif

namespace qnet::engine {
namespace {

absl::Status ValidateConfig(const JobConfig& c) {
  const auto bad = [](auto&&... parts) {
    return absl::InvalidArgumentError(absl::StrCat(parts...));
  };
  if (c.model.empty()) return bad("no model given (zoo:NAME or a TorchScript file)");
  if (c.dataset_dir.empty()) return bad("no dataset directory given");
  if (c.dataset_format != "idx" && c.dataset_format != "cifar10") {
    return bad("unknown dataset format '", c.dataset_format, "' (idx or cifar10)");
  }
  if (c.weight_levels.empty() && (c.weight_bits < 1 || c.weight_bits > 8)) {
    return bad("weight bits must be 1 to 8, got ", c.weight_bits);
  }
  if (c.activation_bits < 0 || c.activation_bits > 8) {
    return bad("activation bits must be 0 (float) to 8, got ", c.activation_bits);
  }
  const TrainSettings& t = c.train;
  if (t.epochs < 0 || t.epochs > 10000) return bad("epochs must be 0 to 10000, got ", t.epochs);
  if (t.pretrain_epochs < 0 || t.pretrain_epochs > 10000) {
    return bad("pretrain epochs must be 0 to 10000, got ", t.pretrain_epochs);
  }
  if (t.batch_size < 1 || t.batch_size > 65536) {
    return bad("batch size must be 1 to 65536, got ", t.batch_size);
  }
  if (!(t.learning_rate >= 0 && t.learning_rate < 100)) {
    return bad("learning rate must be >= 0 (0: default) and < 100, got ", t.learning_rate);
  }
  if (t.max_train_samples < 0 || t.max_test_samples < 0) return bad("sample limits must be >= 0");
  if (!(t.temperature_slope >= 0 && t.temperature_slope <= kMaxTemperatureSlope)) {
    return bad("temperature slope must be 0 (default) to ", kMaxTemperatureSlope, ", got ",
               t.temperature_slope);
  }
  if (absl::Status s = CheckInputNormalization(c.input_mean, c.input_std); !s.ok()) return s;
  if (!(t.distill_weight <= 1)) {
    return bad("distillation weight must be 0 to 1 (negative: default), got ", t.distill_weight);
  }
  for (const std::string& f : c.export_formats) {
    if (f != "torchscript" && f != "onnx" && f != "packed" && f != "metrics") {
      return bad("unknown export format '", f, "' (torchscript, onnx, packed, metrics)");
    }
  }
  if (c.out_dir.empty()) return bad("no output directory given");
  return absl::OkStatus();
}

absl::StatusOr<torch::Device> ResolveDevice(const std::string& name) {
  if (name == "auto" || name.empty()) {
    return torch::cuda::is_available() ? torch::Device(torch::kCUDA, 0)
                                       : torch::Device(torch::kCPU);
  }
  if (name == "cpu") return torch::Device(torch::kCPU);
  if (name == "cuda" || absl::StartsWith(name, "cuda:")) {
    if (!torch::cuda::is_available()) {
      return absl::InvalidArgumentError(absl::StrCat("device ", name, ": no CUDA device here"));
    }
    try {
      torch::Device d(name);
      if (d.index() >= static_cast<int>(torch::cuda::device_count())) {
        return absl::InvalidArgumentError(absl::StrCat("device ", name, " does not exist"));
      }
      return name == "cuda" ? torch::Device(torch::kCUDA, 0) : d;
    } catch (const std::exception&) {
      return absl::InvalidArgumentError(absl::StrCat("bad device '", name, "'"));
    }
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown device '", name, "' (auto, cpu, cuda, cuda:N)"));
}

bool IsZoo(const JobConfig& c) { return absl::StartsWith(c.model, "zoo:"); }

absl::StatusOr<torch::jit::Module> LoadModelFile(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) {
    return absl::InvalidArgumentError(
        absl::StrCat("model file ", path, " does not exist (or is not a file)"));
  }
  try {
    return torch::jit::load(path, torch::kCPU);
  } catch (const std::exception& e) {
    const std::string why = TorchErrorText(e);
    return absl::InvalidArgumentError(
        absl::StrCat("model file ", path, " is not a loadable TorchScript archive: ", why));
  }
}

// The model must map a batch of the dataset's images to [N, classes] logits.
absl::Status CheckModel(torch::jit::Module& model, const DatasetSplits& data,
                        const std::string& name) {
  if (data.test.size() == 0 || data.train.size() == 0) {
    return absl::InvalidArgumentError("the dataset has no train or test samples");
  }
  try {
    torch::NoGradGuard no_grad;
    model.eval();
    const torch::Tensor x = data.test.images.slice(0, 0, std::min<int64_t>(2, data.test.size()));
    const c10::IValue y = model.forward({x});
    if (!y.isTensor() || y.toTensor().dim() != 2 || y.toTensor().size(0) != x.size(0) ||
        y.toTensor().size(1) != data.num_classes) {
      return absl::InvalidArgumentError(
          absl::StrCat("model ", name, " does not map [N,", data.channels, ",", data.height, ",",
                       data.width, "] images to [N,", data.num_classes, "] logits"));
    }
  } catch (const std::exception& e) {
    const std::string why = TorchErrorText(e);
    return absl::InvalidArgumentError(
        absl::StrCat("model ", name, " fails on the dataset's images: ", why));
  }
  model.train();
  return absl::OkStatus();
}

bool Wants(const JobConfig& c, const std::string& format) {
  return c.export_formats.empty() || std::find(c.export_formats.begin(), c.export_formats.end(),
                                               format) != c.export_formats.end();
}

absl::StatusOr<JobResult> RunJobImpl(const JobConfig& config, const JobCallbacks& callbacks) {
  if (absl::Status s = ValidateConfig(config); !s.ok()) return s;
  absl::StatusOr<torch::Device> device = ResolveDevice(config.train.device);
  if (!device.ok()) return device.status();
  torch::manual_seed(config.train.seed);

  // A model file is loaded first: when the job gives no normalisation, the one the model records
  // (a qnet artifact or saved float model given back) is what it was trained with.
  JobConfig job = config;
  std::optional<torch::jit::Module> model_file;
  if (!IsZoo(config)) {
    absl::StatusOr<torch::jit::Module> m = LoadModelFile(config.model);
    if (!m.ok()) return m.status();
    model_file = *std::move(m);
    if (job.input_mean.empty()) {
      absl::StatusOr<std::optional<InputNormalization>> recorded =
          RecordedInputNormalization(*model_file);
      if (!recorded.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat("model file ", config.model, ": ", recorded.status().message()));
      }
      if (recorded->has_value()) {
        job.input_mean = (*recorded)->mean;
        job.input_std = (*recorded)->std;
      }
    }
  }
  absl::StatusOr<DatasetSplits> data = LoadDataset(config.dataset_dir, config.dataset_format,
                                                   {.max_train = config.train.max_train_samples,
                                                    .max_test = config.train.max_test_samples,
                                                    .seed = config.train.seed,
                                                    .mean = job.input_mean,
                                                    .std = job.input_std});
  if (!data.ok()) {
    if (absl::IsNotFound(data.status())) {
      return absl::InvalidArgumentError(absl::StrCat("dataset: ", data.status().message()));
    }
    return data.status();
  }
  absl::StatusOr<torch::jit::Module> model =
      model_file ? *std::move(model_file)
                 : MakeZooModel(config.model.substr(4), data->channels, data->num_classes,
                                config.train.seed);
  if (!model.ok()) return model.status();
  if (absl::Status s = CheckModel(*model, *data, config.model); !s.ok()) return s;

  int64_t float_size = 0;
  for (const torch::Tensor& p : model->parameters()) {
    if (p.is_floating_point()) float_size += p.numel() * 4;
  }

  Trainer trainer(job, callbacks, *data, *device, *model);
  if (absl::Status s = trainer.Run(); !s.ok()) return s;
  JobResult result;
  result.metrics = trainer.metrics();
  result.metrics.float_size_bytes = float_size;
  result.metrics.input_mean = data->channel_mean;
  result.metrics.input_std = data->channel_std;

  std::error_code ec;
  std::filesystem::create_directories(config.out_dir, ec);
  if (ec) {
    return absl::InternalError(absl::StrCat("cannot create ", config.out_dir, ": ", ec.message()));
  }
  const std::filesystem::path out(config.out_dir);
  absl::StatusOr<torch::jit::Module> hard =
      BuildHardModule(trainer.float_model(), trainer.quantized());
  if (!hard.ok()) return hard.status();
  hard->to(torch::kCPU);
  if (absl::Status s = RecordInputNormalization(*hard, data->channel_mean, data->channel_std);
      !s.ok()) {
    return s;
  }
  std::map<std::string, std::string> digests;
  const auto add = [&](const std::string& kind, const std::string& file) -> absl::Status {
    absl::StatusOr<std::string> d = FileDigest((out / file).string());
    if (!d.ok()) return d.status();
    digests[file] = *d;
    result.artifacts.push_back({kind, (out / file).string()});
    return absl::OkStatus();
  };
  if (Wants(config, "torchscript") || Wants(config, "onnx")) {
    const std::string path = (out / "model.pt").string();
    if (absl::Status s = SaveModule(*hard, path); !s.ok()) return s;
    if (Wants(config, "torchscript")) {
      if (absl::Status s = add("torchscript", "model.pt"); !s.ok()) return s;
    }
  }
#ifdef QNET_HAVE_ONNX
  if (Wants(config, "onnx")) {
    // The exporter reads the artifact as saved, exactly what a user downloads.
    absl::Status s =
        ExportOnnx(torch::jit::load((out / "model.pt").string()),
                   {data->channels, data->height, data->width}, (out / "model.onnx").string(),
                   {{kInputMeanAttr, nlohmann::json(data->channel_mean).dump()},
                    {kInputStdAttr, nlohmann::json(data->channel_std).dump()}});
    if (s.ok()) {
      if (absl::Status a = add("onnx", "model.onnx"); !a.ok()) return a;
    } else if (!absl::IsUnimplemented(s)) {
      return s;
    }
  }
#endif
  if (!Wants(config, "torchscript")) std::filesystem::remove(out / "model.pt", ec);
  if (Wants(config, "packed")) {
    absl::StatusOr<PackedModel> packed =
        WritePackedModel(*hard, trainer.quantized(), (out / "model.qnet").string());
    if (!packed.ok()) return packed.status();
    result.metrics.packed_size_bytes = packed->file_bytes;
    result.metrics.compression_ratio =
        static_cast<double>(float_size) /
        static_cast<double>(std::max<int64_t>(1, packed->file_bytes));
    if (absl::Status s = add("packed", "model.qnet"); !s.ok()) return s;
    nlohmann::json manifest = ManifestJson(*packed, digests, float_size);
    manifest["input_normalization"] = InputNormalizationJson(result.metrics);
    if (absl::Status s = WriteJsonFile((out / "manifest.json").string(), manifest); !s.ok()) {
      return s;
    }
    if (absl::Status s = add("manifest", "manifest.json"); !s.ok()) return s;
  }
  if (Wants(config, "metrics")) {
    if (absl::Status s =
            WriteJsonFile((out / "metrics.json").string(), MetricsJson(result.metrics, config));
        !s.ok()) {
      return s;
    }
    if (absl::Status s = add("metrics", "metrics.json"); !s.ok()) return s;
  }
  return result;
}

}  // namespace

absl::StatusOr<JobResult> RunJob(const JobConfig& config, const JobCallbacks& callbacks) {
  try {
    return RunJobImpl(config, callbacks);
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("job failed: ", TorchErrorText(e)));
  } catch (...) {
    return absl::InternalError("job failed with an unknown exception");
  }
}

}  // namespace qnet::engine
