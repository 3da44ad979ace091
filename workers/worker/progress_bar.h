// The live progress line of `qnet-worker run` on stderr: on a terminal one line redrawn in place
// (carriage return); otherwise (a log file, a pipe) one line per finished epoch and per phase
// change, so logs stay readable.
//
//   ProgressBar bar(stderr, isatty(fileno(stderr)));
//   callbacks.on_progress = [&](const qnet::engine::ProgressEvent& e) { bar.Update(e); };
//   ...
//   bar.Finish();
#ifndef QNET_WORKERS_WORKER_PROGRESS_BAR_H_
#define QNET_WORKERS_WORKER_PROGRESS_BAR_H_

#include <cstdio>
#include <string>

#include "workers/engine/job_runner.h"

namespace qnet::worker {

// "joint    epoch 3/9 step  120/469 loss 0.412 T 27.5 acc 88.1% 2150 img/s ETA 1m05s"
std::string FormatProgress(const engine::ProgressEvent& e);
// "1m05s", "42s", "2h03m"
std::string FormatDuration(double seconds);

class ProgressBar {
 public:
  ProgressBar(std::FILE* out, bool interactive) : out_(out), interactive_(interactive) {}
  void Update(const engine::ProgressEvent& e);
  // Ends the redrawn line (terminal), so what follows starts on a fresh line.
  void Finish();

 private:
  std::FILE* out_;
  bool interactive_;
  bool line_open_ = false;
  std::string last_phase_;
};

}  // namespace qnet::worker

#endif  // QNET_WORKERS_WORKER_PROGRESS_BAR_H_
