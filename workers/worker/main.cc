// qnet-worker: the QN engine's process. `run` compresses one model locally; `serve` leases jobs
// from qnetd. Exit status 2 for bad arguments (one line on stderr).
#include <cstdio>
#include <string>

#include <CLI/CLI.hpp>

#include "workers/engine/training/heap.h"
#include "workers/worker/run_command.h"
#include "workers/worker/serve.h"

int main(int argc, char** argv) {
  // Before any thread starts: every command here either trains or is the sandbox child that does.
  qnet::engine::KeepTrainingBuffersInHeap();
  CLI::App app{"qnet-worker: fine-tunes models with Quantization Networks"};
  app.require_subcommand(1);
  qnet::worker::RegisterRunCommand(app);
  qnet::worker::RegisterServeCommand(app);
  qnet::worker::RegisterSandboxChildCommand(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::RuntimeError& e) {
    return e.get_exit_code();  // the command printed its message
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "qnet-worker: %s (see --help)\n", e.what());
    return 2;
  }
  return 0;
}
