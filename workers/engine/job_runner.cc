#include "workers/engine/job_runner.h"

#include <algorithm>
#include <exception>
#include <filesystem>
#include <map>
#include <new>
#include <string>
#include <utility>
#include <vector>

#include <torch/csrc/jit/runtime/jit_exception.h>
#include <torch/script.h>
#include <torch/torch.h>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/job/catalog.h"
#include "common/job/job_spec.h"
#include "workers/engine/data/data.h"
#include "workers/engine/export/export.h"
#include "workers/engine/export/export_writer.h"
#include "workers/engine/export/io_names.h"
#include "workers/engine/export/parity.h"
#include "workers/engine/export/preprocessing_record.h"
#include "workers/engine/model_source/model_source.h"
#include "workers/engine/torch_error.h"
#include "workers/engine/training/trainer.h"
#include "workers/engine/transform/transform.h"

namespace qnet::engine {
namespace {

// The context is the caller's to fill in; the spec was judged by ValidateJobSpec.
absl::Status ValidateContext(const RunContext& c) {
  if (c.dataset_dir.empty()) return absl::InvalidArgumentError("no dataset directory given");
  if (c.out_dir.empty()) return absl::InvalidArgumentError("no output directory given");
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

std::string ShapeText(c10::IntArrayRef sizes) {
  return absl::StrCat("[", absl::StrJoin(sizes, ","), "]");
}

// Why the model's output is not [n, classes] logits; OK when it is.
absl::Status CheckLogits(const c10::IValue& y, int64_t n, int64_t classes, const std::string& in,
                         const char* mode) {
  if (!y.isTensor()) {
    const char* kind = y.isTuple() ? "a tuple, " : y.isGenericDict() ? "a dict, " : "";
    return absl::InvalidArgumentError(absl::StrCat(
        "it returns ", kind, y.type()->repr_str(), ", in ", mode,
        " mode, not one tensor of logits: make forward return only the logits, e.g. trace the "
        "model in eval mode (torch.jit.trace(model.eval(), example)), which records what eval "
        "returns"));
  }
  const torch::Tensor logits = y.toTensor();
  if (logits.dim() != 2 || logits.size(0) != n) {
    return absl::InvalidArgumentError(absl::StrCat("it maps images ", in, " to a tensor ",
                                                   ShapeText(logits.sizes()),
                                                   ", not to [N, classes] logits"));
  }
  if (logits.size(1) != classes) {
    return absl::InvalidArgumentError(
        absl::StrCat("it outputs ", logits.size(1), " classes, the dataset has ", classes));
  }
  return absl::OkStatus();
}

// The model refused the job's images: when its first layer's weight says what it expects and the
// images differ, that; otherwise Torch's own words.
absl::Status ForwardFailure(const std::exception& e, const LayerRef& first,
                            const DatasetSplits& data, const std::string& in, const char* mode) {
  const std::string fed =
      absl::StrCat("[N,", data.channels, ",", data.height, ",", data.width, "]");
  if (first.is_conv && first.in_channels != data.channels) {
    return absl::InvalidArgumentError(absl::StrCat(
        first.name, " expects ", first.in_channels, " input channels, the job feeds ", fed,
        "; set --input-shape ", first.in_channels, "x", data.height, "x", data.width));
  }
  const int64_t values = data.channels * data.height * data.width;
  if (!first.is_conv && first.in_channels != values) {
    return absl::InvalidArgumentError(
        absl::StrCat(first.name, " expects ", first.in_channels, " input features, the job feeds ",
                     fed, " (", values, " values per image); set --input-shape to a shape of ",
                     first.in_channels, " values"));
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "it fails on a batch of the job's images ", in, " in ", mode, " mode: ", TorchErrorText(e),
      "; if the model expects another input shape, set --input-shape CxHxW"));
}

// The dry run before any training (job_runner.h): the model has layers to quantize and maps a
// batch of the job's images to [N, classes] logits in eval and in train mode. Buffers a
// train-mode forward updates (batch-norm statistics) are restored. Leaves the model in train
// mode.
absl::Status DryRun(torch::jit::Module& model, const DatasetSplits& data, const v1::JobSpec& spec) {
  std::vector<LayerRef> layers;
  try {
    layers = FindQuantizableLayers(model, spec.training().quantize_first_last());
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot read the model's forward graph: ", TorchErrorText(e)));
  }
  if (absl::Status s = CheckSomethingToQuantize(layers); !s.ok()) return s;
  BatchIterator first(data.train, /*batch_size=*/2);  // in order; throws DataError (RunJob)
  const torch::Tensor x = first.Next()->images;
  const std::string in = ShapeText(x.sizes());
  torch::NoGradGuard no_grad;
  std::vector<std::pair<torch::Tensor, torch::Tensor>> saved;
  for (const torch::Tensor& b : model.buffers()) saved.emplace_back(b, b.clone());
  for (const bool train : {false, true}) {
    const char* mode = train ? "train" : "eval";
    model.train(train);
    c10::IValue y;
    try {
      y = model.forward({x});
    } catch (const std::exception& e) {
      return ForwardFailure(e, layers.front(), data, in, mode);
    }
    if (absl::Status s = CheckLogits(y, x.size(0), data.num_classes, in, mode); !s.ok()) {
      return s;
    }
  }
  for (auto& [buffer, value] : saved) buffer.copy_(value);
  return absl::OkStatus();
}

// The input pipeline as it ran, written into the spec (defaults resolved). The pad-4 crop of
// fixed-size natural images has no proto value: random_resized_crop stays unset for it, which
// resolves to it again (metrics.json names it).
void ResolvePreprocessingInto(const DatasetSplits& data, v1::JobSpec& spec) {
  spec.set_input_shape(
      job::FormatInputShape({static_cast<int>(data.channels), static_cast<int>(data.height),
                             static_cast<int>(data.width)}));
  v1::Preprocessing& p = *spec.mutable_preprocessing();
  p.set_resize_size(static_cast<int32_t>(data.resize_size));
  const Augmentation& a = data.train.augmentation;
  p.clear_random_resized_crop();
  p.clear_crop_scale_min();
  p.clear_crop_scale_max();
  if (a.crop != Crop::kPad4) p.set_random_resized_crop(a.crop == Crop::kRandomResized);
  if (a.crop == Crop::kRandomResized) {
    p.set_crop_scale_min(a.scale_min);
    p.set_crop_scale_max(a.scale_max);
  }
  p.set_horizontal_flip(a.flip);
  if (!data.holdout) p.clear_holdout_fraction();
}

// Writes the artifacts the job asks for, in catalog order, from the trained model.
absl::Status WriteArtifacts(const JobRun& job, const DatasetSplits& data, Trainer& trainer,
                            const torch::Device& device, const IoNames& io_names,
                            JobResult& result) {
  const RunContext& ctx = job.context;
  std::error_code ec;
  std::filesystem::create_directories(ctx.out_dir, ec);
  if (ec) {
    return absl::InternalError(absl::StrCat("cannot create ", ctx.out_dir, ": ", ec.message()));
  }
  absl::StatusOr<torch::jit::Module> hard =
      BuildHardModule(trainer.float_model(), trainer.quantized());
  if (!hard.ok()) return hard.status();
  hard->to(torch::kCPU);
  if (absl::Status s = RecordInputNormalization(*hard, data.channel_mean, data.channel_std);
      !s.ok()) {
    return s;
  }
  if (absl::Status s = RecordPreprocessing(*hard, result.metrics); !s.ok()) return s;
  // Saved first: the TorchScript artifact, and the input of writers that convert it.
  const std::filesystem::path out(ctx.out_dir);
  if (absl::Status s = SaveModule(*hard, (out / "model.pt").string()); !s.ok()) return s;
  if (job::WantsExport(job.spec, "torchscript")) {
    absl::StatusOr<double> top1 = TorchScriptTop1((out / "model.pt").string(), data.test,
                                                  job.spec.training().batch_size(), device);
    if (!top1.ok()) return top1.status();
    result.metrics.torchscript_top1 = *top1;
  }
  ExportContext context{.run = job,
                        .data = data,
                        .hard = *hard,
                        .saved_module = out / "model.pt",
                        .quantized = trainer.quantized(),
                        .out_dir = out,
                        .io_names = io_names,
                        .result = result,
                        .digests = {}};
  for (const v1::ExportFormat& format : job::ExportFormats()) {
    if (!job::WantsExport(job.spec, format.name())) continue;
    const ExportWriter* writer = FindExportWriter(format.name());
    if (writer == nullptr) {
      return absl::InternalError(
          absl::StrCat("export format ", format.name(), " has no writer in this worker"));
    }
    if (absl::Status s = writer->write(context); !s.ok()) {
      return absl::Status(s.code(), absl::StrCat(format.name(), " export: ", s.message()));
    }
  }
  if (!job::WantsExport(job.spec, "torchscript")) std::filesystem::remove(out / "model.pt", ec);
  return absl::OkStatus();
}

absl::StatusOr<JobResult> RunJobImpl(const JobRun& given, const JobCallbacks& callbacks) {
  if (absl::Status s = job::ValidateJobSpec(given.spec, {.allow_model_path = true}); !s.ok()) {
    return s;
  }
  if (absl::Status s = ValidateContext(given.context); !s.ok()) return s;
  JobRun job{job::WithDefaults(given.spec), given.context};
  absl::StatusOr<torch::Device> device = ResolveDevice(job.context.device);
  if (!device.ok()) return device.status();
  const v1::TrainingSettings& t = job.spec.training();
  torch::manual_seed(t.seed());

  // The model is opened first: when the job gives no normalisation, the one the model records
  // (a qnet artifact or saved float model given back) is what it was trained with.
  absl::StatusOr<std::unique_ptr<OpenedModel>> opened =
      OpenModel(job.context.model_path.empty() ? job.spec.model() : job.context.model_path);
  if (!opened.ok()) return opened.status();
  // An ONNX graph declares its input; the job's shape, when given, overrides it.
  if (job.spec.input_shape().empty()) job.spec.set_input_shape((*opened)->DeclaredInputShape());
  if (job.spec.input_normalization().mean().empty()) {
    absl::StatusOr<std::optional<InputNormalization>> recorded = (*opened)->RecordedNormalization();
    if (!recorded.ok()) return recorded.status();
    if (recorded->has_value()) {
      v1::InputNormalization& norm = *job.spec.mutable_input_normalization();
      norm.mutable_mean()->Add((*recorded)->mean.begin(), (*recorded)->mean.end());
      norm.mutable_std()->Add((*recorded)->std.begin(), (*recorded)->std.end());
    }
  }
  const v1::InputNormalization& norm = job.spec.input_normalization();
  absl::StatusOr<DatasetSplits> data =
      LoadDataset(job.context.dataset_dir, job.context.dataset_format,
                  {.max_train = t.max_train_samples(),
                   .max_test = t.max_test_samples(),
                   .seed = t.seed(),
                   .mean = std::vector<double>(norm.mean().begin(), norm.mean().end()),
                   .std = std::vector<double>(norm.std().begin(), norm.std().end()),
                   .input_shape = job.spec.input_shape(),
                   .preprocessing = job.spec.preprocessing(),
                   .memory_budget_bytes = job.context.dataset_memory_budget_bytes,
                   .loader_threads = job.context.loader_threads});
  if (!data.ok()) {
    if (absl::IsNotFound(data.status())) {
      return absl::InvalidArgumentError(absl::StrCat("dataset: ", data.status().message()));
    }
    return data.status();
  }
  ResolvePreprocessingInto(*data, job.spec);
  absl::StatusOr<torch::jit::Module> model =
      (*opened)->Instantiate(data->channels, data->num_classes, t.seed());
  if (!model.ok()) return model.status();
  if (data->test.size() == 0 || data->train.size() == 0) {
    return absl::InvalidArgumentError("the dataset has no train or test samples");
  }
  if (absl::Status s = DryRun(*model, *data, job.spec); !s.ok()) {
    return absl::Status(s.code(), absl::StrCat("model ", job.spec.model(), ": ", s.message()));
  }
  // Batch norms the importer restored behind folded convolutions start as the identity on this
  // job's images, in train mode too (the activation calibration's batch count).
  model->to(*device);
  if (absl::Status s = InitIdentityBatchNorms(
          *model, (*opened)->RestoredBatchNorms(), data->train, t.batch_size(), t.seed(), *device,
          ResolveRecipe(job.spec, data->augment).calibration_batches);
      !s.ok()) {
    return s;
  }

  int64_t float_size = 0;
  for (const torch::Tensor& p : model->parameters()) {
    if (p.is_floating_point()) float_size += p.numel() * 4;
  }

  Trainer::FloatModelSink save_float_model;
  if (!job.context.float_model_path.empty()) {
    save_float_model = [&](const torch::jit::Module& float_model) {
      return SaveFloatModel(float_model, data->channel_mean, data->channel_std,
                            job.context.float_model_path);
    };
  }
  Trainer trainer(job, callbacks, *data, *device, *model, save_float_model);
  if (absl::Status s = trainer.Run(); !s.ok()) return s;
  JobResult result;
  result.metrics = trainer.metrics();
  result.metrics.float_size_bytes = float_size;
  result.metrics.input_mean = data->channel_mean;
  result.metrics.input_std = data->channel_std;
  // Defaults resolved, the normalisation included: the job's, the model's record, or else the
  // training split's statistics.
  result.metrics.effective_spec = job.spec;
  v1::InputNormalization& used = *result.metrics.effective_spec.mutable_input_normalization();
  used.mutable_mean()->Assign(data->channel_mean.begin(), data->channel_mean.end());
  used.mutable_std()->Assign(data->channel_std.begin(), data->channel_std.end());
  result.metrics.class_names = data->class_names;
  result.metrics.train_crop = CropName(data->train.augmentation.crop);
  result.metrics.channel_repeat = data->channel_repeat;
  result.metrics.restored_batch_norms = (*opened)->RestoredBatchNorms();
  result.metrics.holdout = data->holdout;
  if (absl::Status s =
          WriteArtifacts(job, *data, trainer, *device, (*opened)->DeclaredIoNames(), result);
      !s.ok()) {
    return s;
  }
  return result;
}

// The dry run passed, so the model's own ops work: a Torch error now comes from training this
// model this way, and another attempt would meet it again.
absl::Status TrainingFailure(const std::exception& e) {
  return absl::FailedPreconditionError(absl::StrCat("training failed: ", TorchErrorText(e)));
}

}  // namespace

absl::StatusOr<JobResult> RunJob(const JobRun& run, const JobCallbacks& callbacks) {
  try {
    return RunJobImpl(run, callbacks);
  } catch (const DataError& e) {  // an image of a streaming dataset that does not decode
    return e.status();
  } catch (const c10::OutOfMemoryError& e) {
    return absl::ResourceExhaustedError(absl::StrCat("out of device memory: ", TorchErrorText(e),
                                                     "; a smaller --batch-size fits "
                                                     "in less"));
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError("out of memory; a smaller --batch-size fits in less");
  } catch (const c10::Error& e) {
    return TrainingFailure(e);
  } catch (const torch::jit::JITException& e) {  // raised by the model's own TorchScript code
    return TrainingFailure(e);
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("job failed: ", TorchErrorText(e)));
  } catch (...) {
    return absl::InternalError("job failed with an unknown exception");
  }
}

}  // namespace qnet::engine
