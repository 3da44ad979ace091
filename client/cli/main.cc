// The `qnet` command line; everything lives in qnet_cli.h.
#include <unistd.h>

#include <iostream>

#include "client/cli/qnet_cli.h"

int main(int argc, char** argv) {
  return qnet::cli::QnetMain(argc, argv, {std::cout, std::cerr, isatty(STDERR_FILENO) == 1});
}
