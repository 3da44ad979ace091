// Live progress of a job on the terminal, for `qnet submit --wait` and `qnet watch`. On a TTY one
// line is redrawn in place ("\r"): state, phase, epoch/total, a bar over the whole run, loss,
// temperature, accuracy, images/s and ETA. Elsewhere (logs, CI) a line is printed only when the
// state, attempt, phase or epoch changes, so logs stay short.
//
//   qnet::cli::ProgressPrinter printer(std::cerr, /*tty=*/isatty(2));
//   client.WatchJob(id, [&](const qnet::v1::Job& job) { printer.Update(job); return true; });
//   printer.Finish();
#ifndef QNET_CLIENT_CLI_PROGRESS_LINE_H_
#define QNET_CLIENT_CLI_PROGRESS_LINE_H_

#include <ostream>
#include <string>

#include "qnet/v1/job.pb.h"

namespace qnet::cli {

// "1h02m", "3m05s", "42s"; "-" for a negative or unknown duration.
std::string FormatDuration(double seconds);
// "[#######-------------]" with `width` cells for `fraction` in [0, 1].
std::string FormatBar(double fraction, int width);
// Fraction of the whole run done: completed epochs plus the current one's steps.
double RunFraction(const v1::Progress& progress);
// The in-place line, e.g.
// "RUNNING joint 3/5 [########------------]  45% loss 0.4123 T 12.3 acc 87.1% 1234 img/s ETA 1m23s"
std::string FormatProgressLine(const v1::Job& job);
// The log line printed on a change, e.g. "RUNNING attempt 1: joint epoch 3/5 loss 0.4123 ...".
std::string FormatProgressEvent(const v1::Job& job);

class ProgressPrinter {
 public:
  ProgressPrinter(std::ostream& out, bool tty) : out_(out), tty_(tty) {}
  void Update(const v1::Job& job);
  // Ends the redrawn line so later output starts on a fresh one.
  void Finish();

 private:
  std::ostream& out_;
  bool tty_;
  bool line_open_ = false;
  std::string last_key_;
};

}  // namespace qnet::cli

#endif  // QNET_CLIENT_CLI_PROGRESS_LINE_H_
