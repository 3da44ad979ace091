#include "workers/worker/progress_bar.h"

#include <cmath>

#include "absl/strings/str_format.h"

namespace qnet::worker {

std::string FormatDuration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const int64_t s = static_cast<int64_t>(std::llround(seconds));
  if (s >= 3600) return absl::StrFormat("%dh%02dm", s / 3600, (s % 3600) / 60);
  if (s >= 60) return absl::StrFormat("%dm%02ds", s / 60, s % 60);
  return absl::StrFormat("%ds", s);
}

std::string FormatProgress(const engine::ProgressEvent& e) {
  std::string line = absl::StrFormat("%-11s epoch %d/%d", e.phase, e.epoch, e.total_epochs);
  if (e.steps_per_epoch > 0) {
    line += absl::StrFormat(" step %4d/%d", e.step, e.steps_per_epoch);
  }
  if (e.phase != "finalize") line += absl::StrFormat(" loss %.3f", e.loss);
  if (e.temperature > 0) line += absl::StrFormat(" T %.1f", e.temperature);
  if (e.accuracy >= 0) line += absl::StrFormat(" acc %.1f%%", 100.0 * e.accuracy);
  if (e.images_per_second > 0) line += absl::StrFormat(" %.0f img/s", e.images_per_second);
  if (!e.epoch_end && e.eta_seconds > 0) line += " ETA " + FormatDuration(e.eta_seconds);
  return line;
}

void ProgressBar::Update(const engine::ProgressEvent& e) {
  const std::string line = FormatProgress(e);
  if (interactive_) {
    // Pad so a shorter line fully covers the previous one.
    std::fprintf(out_, "\r%-100s", line.c_str());
    line_open_ = true;
    if (e.epoch_end) {
      std::fputc('\n', out_);
      line_open_ = false;
    }
  } else if (e.epoch_end || e.phase != last_phase_) {
    std::fprintf(out_, "%s\n", line.c_str());
  }
  last_phase_ = e.phase;
  std::fflush(out_);
}

void ProgressBar::Finish() {
  if (line_open_) {
    std::fputc('\n', out_);
    line_open_ = false;
  }
  std::fflush(out_);
}

}  // namespace qnet::worker
