#include "client/cli/progress_line.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "client/cli/terminal_text.h"

namespace qnet::cli {
namespace {

constexpr int kBarWidth = 20;

// The numbers after the phase: "loss 0.4123 T 12.3 acc 87.1% 1234 img/s ETA 1m23s"; a value the
// worker has not reported yet is left out rather than shown as 0.
std::string FormatMeasures(const v1::Progress& p, bool running) {
  std::string s;
  if (p.loss() > 0) absl::StrAppendFormat(&s, " loss %.4f", p.loss());
  if (p.temperature() > 0) absl::StrAppendFormat(&s, " T %.3g", p.temperature());
  if (p.accuracy() > 0) absl::StrAppendFormat(&s, " acc %.1f%%", 100 * p.accuracy());
  if (p.images_per_second() > 0) absl::StrAppendFormat(&s, " %.0f img/s", p.images_per_second());
  if (running && p.eta_seconds() > 0) absl::StrAppend(&s, " ETA ", FormatDuration(p.eta_seconds()));
  return s;
}

std::string StateName(const v1::Job& job) { return v1::JobState_Name(job.state()); }

}  // namespace

std::string FormatDuration(double seconds) {
  if (!(seconds >= 0) || !std::isfinite(seconds)) return "-";
  const auto total = static_cast<long long>(std::llround(seconds));
  const long long h = total / 3600, m = (total / 60) % 60, s = total % 60;
  if (h > 0) return absl::StrFormat("%dh%02dm", h, m);
  if (m > 0) return absl::StrFormat("%dm%02ds", m, s);
  return absl::StrFormat("%ds", s);
}

std::string FormatBar(double fraction, int width) {
  if (!(fraction >= 0)) fraction = 0;
  fraction = std::min(fraction, 1.0);
  const int filled = static_cast<int>(std::floor(fraction * width + 1e-9));
  return absl::StrCat("[", std::string(filled, '#'), std::string(width - filled, '-'), "]");
}

double RunFraction(const v1::Progress& p) {
  if (p.total_epochs() <= 0 || p.epoch() <= 0) return 0;
  double within = 0;
  if (p.steps_per_epoch() > 0) {
    within = std::clamp(static_cast<double>(p.step()) / static_cast<double>(p.steps_per_epoch()),
                        0.0, 1.0);
  }
  return std::clamp((p.epoch() - 1 + within) / p.total_epochs(), 0.0, 1.0);
}

std::string FormatProgressLine(const v1::Job& job) {
  const v1::Progress& p = job.progress();
  std::string line = StateName(job);
  if (job.attempt() > 1) absl::StrAppend(&line, " (attempt ", job.attempt(), ")");
  if (job.state() == v1::QUEUED) {
    absl::StrAppend(&line, " waiting for a worker");
    return line;
  }
  const bool running = job.state() == v1::RUNNING;
  if (p.epoch() <= 0 && running) {
    absl::StrAppend(&line, " preparing", job.worker_id().empty() ? "" : " on ",
                    TerminalSafe(job.worker_id()));
    return line;
  }
  const double fraction = job.state() == v1::SUCCEEDED ? 1.0 : RunFraction(p);
  absl::StrAppend(&line, " ", p.phase().empty() ? "-" : TerminalSafe(p.phase()));
  if (p.total_epochs() > 0) absl::StrAppend(&line, " ", p.epoch(), "/", p.total_epochs());
  absl::StrAppendFormat(&line, " %s %3.0f%%", FormatBar(fraction, kBarWidth), 100 * fraction);
  absl::StrAppend(&line, FormatMeasures(p, running));
  return line;
}

std::string FormatProgressEvent(const v1::Job& job) {
  const v1::Progress& p = job.progress();
  std::string line = absl::StrCat(StateName(job), " attempt ", std::max(job.attempt(), 1));
  if (job.state() == v1::QUEUED) return absl::StrCat(line, ": waiting for a worker");
  if (p.epoch() <= 0) {
    if (job.state() == v1::RUNNING) absl::StrAppend(&line, ": preparing");
    return line;
  }
  absl::StrAppend(&line, ": ", p.phase().empty() ? "-" : TerminalSafe(p.phase()), " epoch ",
                  p.epoch());
  if (p.total_epochs() > 0) absl::StrAppend(&line, "/", p.total_epochs());
  absl::StrAppend(&line, FormatMeasures(p, job.state() == v1::RUNNING));
  return line;
}

void ProgressPrinter::Update(const v1::Job& job) {
  if (tty_) {
    // Erase to the end of the line so a shorter line leaves no residue.
    out_ << "\r" << FormatProgressLine(job) << "\x1b[K" << std::flush;
    line_open_ = true;
    return;
  }
  const v1::Progress& p = job.progress();
  std::string key = absl::StrCat(job.state(), "/", job.attempt(), "/", p.phase(), "/", p.epoch());
  if (key == last_key_) return;
  last_key_ = std::move(key);
  out_ << FormatProgressEvent(job) << "\n" << std::flush;
}

void ProgressPrinter::Finish() {
  if (line_open_) out_ << "\n" << std::flush;
  line_open_ = false;
}

}  // namespace qnet::cli
