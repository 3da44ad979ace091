// The `qnet` command line: flag parsing (CLI11) and dispatch to the subcommands in commands.h.
// main() is a one-line call of QnetMain; tests call it with their own argv and streams.
//
//   const char* argv[] = {"qnet", "--server", "127.0.0.1:50051", "get", "job-1", "--json"};
//   int rc = qnet::cli::QnetMain(6, argv, {std::cout, std::cerr, false});
//
// The server address is --server, else $QNET_SERVER, else 127.0.0.1:50051. Exit codes: see
// exit_codes.h (flag errors exit 2).
#ifndef QNET_CLIENT_CLI_QNET_CLI_H_
#define QNET_CLIENT_CLI_QNET_CLI_H_

#include "client/cli/commands.h"

namespace qnet::cli {

inline constexpr char kDefaultServer[] = "127.0.0.1:50051";

int QnetMain(int argc, const char* const argv[], const Console& console);

}  // namespace qnet::cli

#endif  // QNET_CLIENT_CLI_QNET_CLI_H_
