#include "workers/worker/run_command.h"

#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "common/input_normalization.h"
#include "common/job/catalog.h"
#include "common/job/job_spec.h"
#include "common/job/job_spec_flags.h"
#include "datasets/dataset_format.h"
#include "workers/worker/progress_bar.h"

namespace qnet::worker {
namespace {

std::atomic<bool> g_interrupted{false};

void OnSigint(int /*signal*/) { g_interrupted.store(true); }

// The job's flags (shared with `qnet submit`) and where this run keeps things.
struct RunArgs {
  job::JobSpecFlags job;
  std::string dataset_format;
  std::string device = "auto";
  std::string out;
  std::string checkpoint_dir;
  std::string save_float_model;
  int64_t dataset_memory_mib = 2048;
  int loader_threads = 0;
};

[[noreturn]] void Fail(int code, const std::string& message) {
  std::fprintf(stderr, "qnet-worker run: %s\n", message.c_str());
  throw CLI::RuntimeError(code);
}

std::string Bytes(int64_t b) {
  if (b >= (int64_t{1} << 20)) return absl::StrFormat("%.2f MiB", b / 1048576.0);
  if (b >= 1024) return absl::StrFormat("%.1f KiB", b / 1024.0);
  return absl::StrCat(b, " B");
}

void Run(const RunArgs& a) {
  absl::StatusOr<v1::JobSpec> spec = job::BuildJobSpec(a.job, a.job.model);
  if (!spec.ok()) Fail(2, std::string(spec.status().message()));
  if (absl::Status s = job::ValidateJobSpec(*spec, {.allow_model_path = true}); !s.ok()) {
    Fail(2, std::string(s.message()));
  }
  absl::StatusOr<DatasetChoice> ds = ResolveDataset(a.job.dataset, a.dataset_format);
  if (!ds.ok()) Fail(2, std::string(ds.status().message()));
  engine::JobRun run{.spec = *std::move(spec),
                     .context = {.model_path = "",
                                 .dataset_dir = ds->dir,
                                 .dataset_format = ds->format,
                                 .dataset_memory_budget_bytes = a.dataset_memory_mib << 20,
                                 .loader_threads = a.loader_threads,
                                 .device = a.device,
                                 .out_dir = a.out,
                                 .checkpoint_dir = a.checkpoint_dir,
                                 .float_model_path = a.save_float_model}};

  ProgressBar bar(stderr, isatty(fileno(stderr)) != 0);
  engine::JobCallbacks callbacks;
  callbacks.on_progress = [&](const engine::ProgressEvent& e) { bar.Update(e); };
  callbacks.should_stop = [] { return g_interrupted.load(); };
  auto previous = std::signal(SIGINT, OnSigint);
  absl::StatusOr<engine::JobResult> result = engine::RunJob(run, callbacks);
  std::signal(SIGINT, previous);
  bar.Finish();
  if (!result.ok()) {
    if (absl::IsCancelled(result.status())) Fail(130, "interrupted");
    Fail(absl::IsInvalidArgument(result.status()) ? 2 : 1, std::string(result.status().message()));
  }
  std::fputs(FormatSummary(run, *result).c_str(), stdout);
  std::fflush(stdout);
}

}  // namespace

absl::StatusOr<DatasetChoice> ResolveDataset(const std::string& dataset,
                                             const std::string& format) {
  static const std::vector<std::pair<std::string, DatasetChoice>> kNamed = {
      {"fashion-mnist", {"/usr/share/datasets/fashion-mnist", "idx"}},
      {"mnist", {"/usr/share/datasets/mnist", "idx"}},
      {"cifar10", {"/usr/share/datasets/cifar10", "cifar10"}},
  };
  DatasetChoice choice;
  for (const auto& [name, c] : kNamed) {
    if (dataset == name) choice = c;
  }
  if (choice.dir.empty()) {
    // A folder, or a dataset stored in one file (an archive, an .npz): the format says by content.
    std::error_code ec;
    if (!std::filesystem::exists(dataset, ec)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--dataset '", dataset,
                       "' is neither a known name (fashion-mnist, mnist, cifar10) nor a dataset "
                       "folder, archive or .npz file"));
    }
    choice.dir = dataset;
    if (format.empty()) {
      absl::StatusOr<const datasets::DatasetFormat*> detected =
          datasets::DetectDatasetFormat(dataset);
      if (!detected.ok()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "--dataset ", dataset, ": ", detected.status().message(), "; give --dataset-format"));
      }
      choice.format = std::string((*detected)->name());
    }
  }
  if (!format.empty()) choice.format = format;
  return choice;
}

std::string FormatSummary(const engine::JobRun& run, const engine::JobResult& result) {
  const engine::JobMetrics& m = result.metrics;
  const v1::JobSpec& spec = m.effective_spec;
  std::string bits = absl::StrCat("W", spec.weight_bits());
  if (!spec.weight_levels().empty()) {
    bits = absl::StrCat("W{", spec.weight_levels().size(), " levels}");
  }
  if (spec.activation_bits() > 0) absl::StrAppend(&bits, "A", spec.activation_bits());
  std::string s = absl::StrFormat("\n%s on %s (%s, device %s)\n", spec.model(),
                                  run.context.dataset_dir, bits, m.device);
  absl::StrAppendFormat(&s, "  %-26s %8s %8s\n", "", "top-1", "top-5");
  absl::StrAppendFormat(&s, "  %-26s %7.2f%% %7.2f%%\n", "float", 100 * m.float_top1,
                        100 * m.float_top5);
  absl::StrAppendFormat(&s, "  %-26s %7.2f%% %7.2f%%\n", "quantized (hard, BN re-est)",
                        100 * m.quantized_top1, 100 * m.quantized_top5);
  if (spec.training().epochs() > 0) {  // without QN epochs there is no last epoch to report
    absl::StrAppendFormat(&s, "  %-26s %7.2f%%\n", "last epoch soft", 100 * m.soft_top1);
    absl::StrAppendFormat(&s, "  %-26s %7.2f%%\n", "last epoch hard", 100 * m.hard_top1);
  }
  // Parity: each artifact scored as loaded from its file (model.onnx by ONNX Runtime).
  if (m.torchscript_top1) {
    absl::StrAppendFormat(&s, "  %-26s %7.2f%%\n", "model.pt", 100 * *m.torchscript_top1);
  }
  if (m.onnx_top1) {
    absl::StrAppendFormat(&s, "  %-26s %7.2f%%\n", "model.onnx (ONNX Runtime)", 100 * *m.onnx_top1);
  }
  if (m.packed_size_bytes > 0) {
    absl::StrAppendFormat(&s, "  size: float %s, packed %s, ratio %.1fx\n",
                          Bytes(m.float_size_bytes), Bytes(m.packed_size_bytes),
                          m.compression_ratio);
  } else {
    absl::StrAppendFormat(&s, "  size: float %s (no packed artifact: --export lacks packed)\n",
                          Bytes(m.float_size_bytes));
  }
  absl::StrAppend(&s, "  ", FormatInputNormalization(m.input_mean, m.input_std), "\n");
  for (const engine::ArtifactFile& a : result.artifacts) {
    absl::StrAppendFormat(&s, "  %-12s %s\n", a.kind, a.path);
  }
  return s;
}

void RegisterRunCommand(CLI::App& app) {
  auto args = std::make_shared<RunArgs>();
  CLI::App* run = app.add_subcommand("run", "Run one compression job locally");
  job::BindJobSpecFlags(
      *run, args->job,
      {.model_help = absl::StrCat(job::ZooModelNames(), ", or a TorchScript .pt file"),
       .dataset_help = "fashion-mnist, mnist, cifar10, or a dataset folder, archive (.tar, "
                       ".tar.gz, .zip) or .npz file"});
  run->add_option("--dataset-format", args->dataset_format,
                  absl::StrCat(datasets::DatasetFormatNameList(), " (default: detect)"))
      ->check(CLI::IsMember(datasets::DatasetFormatNames()));
  run->add_option("--dataset-memory", args->dataset_memory_mib,
                  "MiB of prepared images (uint8 at the model's input size) kept in memory; a "
                  "larger dataset streams from its files (default 2048)")
      ->check(CLI::PositiveNumber);
  run->add_option("--loader-threads", args->loader_threads,
                  "threads decoding and augmenting images (default: one per core)")
      ->check(CLI::NonNegativeNumber);
  run->add_option("--device", args->device, "auto, cpu, cuda or cuda:N");
  run->add_option("--checkpoint-dir", args->checkpoint_dir,
                  "write per-epoch checkpoints here and resume from the newest");
  run->add_option("--save-float-model", args->save_float_model,
                  "also save the full-precision model (after pre-training) here as TorchScript");
  run->add_option("--out", args->out, "output directory for the artifacts")->required();
  run->callback([args] { Run(*args); });
}

}  // namespace qnet::worker
