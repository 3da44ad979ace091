// Text from the server or a worker (job ids, errors, device names, phases, dataset and model
// names) made safe to print on a terminal: control characters, ESC, DEL, C1 controls and the
// bidirectional overrides are shown as visible escapes ("\x1b", "\n", "\u202e"), so a worker
// cannot retitle the window, clear the screen or draw a fake status line. Invalid UTF-8 is
// shown as U+FFFD.
//
//   std::cout << "error: " << qnet::cli::TerminalSafe(job.error()) << "\n";
#ifndef QNET_CLIENT_CLI_TERMINAL_TEXT_H_
#define QNET_CLIENT_CLI_TERMINAL_TEXT_H_

#include <string>

#include "absl/strings/string_view.h"

namespace qnet::cli {

std::string TerminalSafe(absl::string_view text);

}  // namespace qnet::cli

#endif  // QNET_CLIENT_CLI_TERMINAL_TEXT_H_
