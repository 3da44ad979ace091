#include "client/cli/job_report.h"

#include <algorithm>
#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "client/cli/progress_line.h"
#include "client/cli/terminal_text.h"
#include "common/input_normalization.h"
#include "common/job/job_spec.h"
#include "common/utf8.h"

namespace qnet::cli {
namespace {

// Columns sized to their widest cell, two spaces apart; columns from `right_from` on are
// right-aligned (numbers). Cells are made terminal-safe: most hold server-sent text.
std::string RenderTable(std::vector<std::vector<std::string>> rows,
                        size_t right_from = std::numeric_limits<size_t>::max()) {
  for (auto& row : rows) {
    for (std::string& cell : row) cell = TerminalSafe(cell);
  }
  std::vector<size_t> widths;
  for (const auto& row : rows) {
    widths.resize(std::max(widths.size(), row.size()), 0);
    for (size_t i = 0; i < row.size(); ++i) widths[i] = std::max(widths[i], row[i].size());
  }
  std::string out;
  for (const auto& row : rows) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      const size_t pad = widths[i] - row[i].size();
      if (i >= right_from) line.append(pad, ' ');
      absl::StrAppend(&line, row[i]);
      if (i + 1 < row.size()) line.append(i >= right_from ? 2 : pad + 2, ' ');
    }
    absl::StrAppend(&out, line, "\n");
  }
  return out;
}

std::string Bits(const v1::JobSpec& spec) {
  std::string s = absl::StrCat("W", job::EffectiveWeightBits(spec));
  if (spec.weight_levels_size() > 0) s = absl::StrCat("L", spec.weight_levels_size());
  absl::StrAppend(&s, spec.activation_bits() > 0 ? absl::StrCat("A", spec.activation_bits()) : "");
  return s;
}

std::string FormatTime(const google::protobuf::Timestamp& t) {
  if (t.seconds() == 0 && t.nanos() == 0) return "";
  const time_t seconds = static_cast<time_t>(t.seconds());
  struct tm utc;
  gmtime_r(&seconds, &utc);
  char buf[32];
  strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%SZ", &utc);
  return buf;
}

}  // namespace

std::string FormatBytes(int64_t bytes) {
  if (bytes < 1024) return absl::StrCat(bytes, " B");
  const char* units[] = {"KiB", "MiB", "GiB", "TiB"};
  double value = static_cast<double>(bytes) / 1024;
  int unit = 0;
  while (value >= 1024 && unit < 3) {
    value /= 1024;
    ++unit;
  }
  return absl::StrFormat("%.1f %s", value, units[unit]);
}

std::string FormatPercent(double fraction) {
  if (fraction == 0) return "-";
  return absl::StrFormat("%.2f%%", 100 * fraction);
}

std::string FormatMetricsTable(const v1::Metrics& m) {
  std::string ratio = "-";
  if (m.compression_ratio() > 0) ratio = absl::StrFormat("%.1fx", m.compression_ratio());
  std::vector<std::vector<std::string>> rows = {
      {"", "float", "quantized"},
      {"top-1", FormatPercent(m.float_top1()), FormatPercent(m.quantized_top1())},
      {"top-5", FormatPercent(m.float_top5()), FormatPercent(m.quantized_top5())},
      {"soft top-1", "", FormatPercent(m.soft_top1())},
      {"hard top-1 (no BN re-est.)", "", FormatPercent(m.hard_top1())},
      {"size", m.float_size_bytes() > 0 ? FormatBytes(m.float_size_bytes()) : "-",
       m.packed_size_bytes() > 0 ? FormatBytes(m.packed_size_bytes()) : "-"},
      {"compression ratio", "", ratio},
      // Parity: each artifact scored as loaded from its file (model.onnx by ONNX Runtime).
      {"model.pt top-1", "",
       m.has_torchscript_top1() ? FormatPercent(m.torchscript_top1()) : std::string("-")},
      {"model.onnx top-1 (ONNX Runtime)", "",
       m.has_onnx_top1() ? FormatPercent(m.onnx_top1()) : std::string("-")},
  };
  std::string out = RenderTable(rows, 1);
  if (!m.device().empty()) absl::StrAppend(&out, "device: ", TerminalSafe(m.device()), "\n");
  const v1::InputNormalization& norm = m.input_normalization();
  const std::string inputs = FormatInputNormalization({norm.mean().begin(), norm.mean().end()},
                                                      {norm.std().begin(), norm.std().end()});
  if (!inputs.empty()) absl::StrAppend(&out, inputs, "\n");
  const v1::JobSpec& ran = m.effective_spec();
  if (!ran.input_shape().empty()) {
    const v1::Preprocessing& p = ran.preprocessing();
    absl::StrAppend(&out, "input ", TerminalSafe(ran.input_shape()), ": evaluation resize ",
                    p.resize_size(), " + center crop; training");
    if (p.random_resized_crop()) {
      absl::StrAppend(&out, absl::StrFormat(" random-resized-crop %.2f..%.2f", p.crop_scale_min(),
                                            p.crop_scale_max() == 0 ? 1.0 : p.crop_scale_max()));
    } else if (!p.has_random_resized_crop()) {  // unset after resolution: pad-4 crops
      absl::StrAppend(&out, " pad-4 crop");
    }
    absl::StrAppend(&out, p.horizontal_flip() ? " + flip" : " without flip",
                    p.has_holdout_fraction() ? absl::StrFormat("; test = %.0f%% of train held out",
                                                               100 * p.holdout_fraction())
                                             : "",
                    "\n");
  }
  if (!m.class_names().empty()) {
    constexpr int kShown = 10;
    std::vector<std::string> names(
        m.class_names().begin(), m.class_names().begin() + std::min(m.class_names_size(), kShown));
    if (m.class_names_size() > kShown) names.push_back("...");
    absl::StrAppend(&out, "classes (", m.class_names_size(),
                    "): ", TerminalSafe(absl::StrJoin(names, ", ")), "\n");
  }
  return out;
}

std::string FormatArtifacts(const google::protobuf::RepeatedPtrField<v1::Artifact>& artifacts) {
  if (artifacts.empty()) return "artifacts: none\n";
  std::vector<std::vector<std::string>> rows;
  for (const v1::Artifact& a : artifacts) {
    rows.push_back({" ", a.kind(), a.filename(), FormatBytes(a.size_bytes()), a.digest()});
  }
  return absl::StrCat("artifacts:\n", RenderTable(rows));
}

std::string FormatJobSummary(const v1::Job& job) {
  const v1::JobSpec& spec = job.spec();
  std::string out =
      absl::StrCat("job ", TerminalSafe(job.id()), "  ", v1::JobState_Name(job.state()));
  if (job.attempt() > 0) absl::StrAppend(&out, "  attempt ", job.attempt());
  if (job.cancel_requested() && job.state() == v1::RUNNING) absl::StrAppend(&out, "  (cancelling)");
  absl::StrAppend(&out, "\n  model ", TerminalSafe(spec.model()), "  dataset ",
                  TerminalSafe(spec.dataset()), "  ", Bits(spec), "\n");
  if (!job.worker_id().empty()) {
    absl::StrAppend(&out, "  worker ", TerminalSafe(job.worker_id()), "\n");
  }
  const std::string created = FormatTime(job.create_time());
  if (!created.empty()) absl::StrAppend(&out, "  created ", created, "\n");
  if (job.state() == v1::RUNNING || job.state() == v1::QUEUED) {
    absl::StrAppend(&out, "  ", FormatProgressLine(job), "\n");
  }
  if (!job.error().empty()) absl::StrAppend(&out, "  error: ", TerminalSafe(job.error()), "\n");
  if (job.state() == v1::SUCCEEDED) {
    absl::StrAppend(&out, FormatMetricsTable(job.metrics()), FormatArtifacts(job.artifacts()));
  }
  return out;
}

std::string FormatJobTable(const std::vector<v1::Job>& jobs) {
  if (jobs.empty()) return "no jobs\n";
  std::vector<std::vector<std::string>> rows = {
      {"ID", "STATE", "MODEL", "DATASET", "BITS", "ATTEMPT", "PROGRESS / TOP-1"}};
  for (const v1::Job& job : jobs) {
    std::string progress;
    if (job.state() == v1::SUCCEEDED) {
      progress = FormatPercent(job.metrics().quantized_top1());
    } else if (job.state() == v1::RUNNING && job.progress().total_epochs() > 0) {
      progress = absl::StrFormat("%s %d/%d %.0f%%", job.progress().phase(), job.progress().epoch(),
                                 job.progress().total_epochs(), 100 * RunFraction(job.progress()));
    } else if (!job.error().empty()) {
      progress = TruncateUtf8(job.error(), 60);
    }
    std::string model = job.spec().model();
    if (model.starts_with("sha256:") && model.size() > 19) model = model.substr(0, 19) + "...";
    rows.push_back({job.id(), v1::JobState_Name(job.state()), model, job.spec().dataset(),
                    Bits(job.spec()), absl::StrCat(job.attempt()), progress});
  }
  return RenderTable(rows);
}

std::string FormatDatasetTable(const std::vector<v1::Dataset>& datasets) {
  if (datasets.empty()) return "no datasets\n";
  std::vector<std::vector<std::string>> rows = {
      {"NAME", "ORIGIN", "FORMAT", "SHAPE", "CLASSES", "TRAIN", "TEST", "DIGEST"}};
  // -1: not known without reading every file (compressed IDX).
  auto count = [](int64_t n) { return n < 0 ? std::string("?") : absl::StrCat(n); };
  for (const v1::Dataset& d : datasets) {
    rows.push_back({d.name(), d.origin(), d.format(),
                    absl::StrCat(d.channels(), "x", d.height(), "x", d.width()),
                    absl::StrCat(d.num_classes()), count(d.train_images()), count(d.test_images()),
                    d.digest().substr(0, 19)});
  }
  return RenderTable(rows);
}

std::string FormatModelTable(const std::vector<v1::Model>& models) {
  if (models.empty()) return "no models\n";
  std::vector<std::vector<std::string>> rows = {{"NAME", "INPUT", "DESCRIPTION"}};
  for (const v1::Model& m : models) rows.push_back({m.name(), m.input_shape(), m.description()});
  return RenderTable(rows);
}

}  // namespace qnet::cli
