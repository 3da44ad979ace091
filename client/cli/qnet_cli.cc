#include "client/cli/qnet_cli.h"

#include <exception>
#include <memory>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "client/cli/artifact_select.h"
#include "client/cli/exit_codes.h"

namespace qnet::cli {
namespace {

void AddSubmitFlags(CLI::App& sub, SubmitFlags& f) {
  sub.add_option("--model", f.model,
                 "zoo:NAME (see `qnet models`), sha256:<hex> of an uploaded model, or the path of "
                 "a TorchScript .pt file to upload")
      ->required();
  sub.add_option("--dataset", f.dataset, "dataset name the server knows (see `qnet datasets`)")
      ->required();
  sub.add_option("--weight-bits", f.weight_bits, "weight bit width, 1..8");
  sub.add_option("--activation-bits", f.activation_bits, "activation bit width (0: float)");
  sub.add_option("--weight-levels", f.weight_levels,
                 "explicit sorted weight levels, comma-separated (overrides --weight-bits levels)");
  sub.add_option("--epochs", f.epochs, "QN fine-tuning epochs");
  sub.add_option("--pretrain-epochs", f.pretrain_epochs, "full-precision epochs first");
  sub.add_option("--batch-size", f.batch_size, "training batch size");
  sub.add_option("--lr", f.learning_rate, "learning rate (0: the recipe's default)");
  sub.add_option("--max-train-samples", f.max_train_samples, "train on at most N images");
  sub.add_option("--max-test-samples", f.max_test_samples, "evaluate on at most N images");
  sub.add_option("--seed", f.seed, "random seed");
  sub.add_option("--temperature-slope", f.temperature_slope, "QN temperature growth per epoch");
  sub.add_option("--distill-weight", f.distill_weight,
                 "weight of the float model's predictions in the QN loss, 0 (labels only) to 1 "
                 "(default: the recipe's 0.5)");
  sub.add_flag("--quantize-first-last", f.quantize_first_last,
               "also quantize the first conv and last linear layer");
  sub.add_flag("--learn-thresholds", f.learn_thresholds, "learn the quantizer's thresholds");
  sub.add_option("--input-mean", f.input_mean,
                 "per-channel mean the model's inputs are normalised with, pixels scaled to "
                 "[0,1], comma-separated (default: the dataset's; give with --input-std)");
  sub.add_option("--input-std", f.input_std,
                 "per-channel std of that normalisation, comma-separated");
  sub.add_option("--priority", f.priority, "higher runs first");
  sub.add_option("--export", f.export_formats,
                 "artifacts to produce, comma-separated: torchscript,onnx,packed,metrics "
                 "(default: all)");
  sub.add_option("--request-id", f.request_id,
                 "idempotency key: submitting again with the same id returns the first job");
}

}  // namespace

int QnetMain(int argc, const char* const argv[], const Console& console) {
  CLI::App app{"qnet: submit and follow model-compression jobs on a qnetd server"};
  app.name("qnet");
  app.require_subcommand(1);
  // Lets --server come after the subcommand too.
  app.fallthrough();
  std::string server = kDefaultServer;
  app.add_option("--server", server, "qnetd gRPC address host:port")
      ->envname("QNET_SERVER")
      ->capture_default_str();

  SubmitFlags submit_flags;
  bool wait = false, json = false;
  std::string id, state, out_dir, format;

  CLI::App* submit = app.add_subcommand("submit", "submit a compression job");
  AddSubmitFlags(*submit, submit_flags);
  submit->add_flag("--wait", wait, "follow the job to its end, then print its results");
  submit->add_flag("--json", json, "print the job as JSON on stdout (only that)");

  CLI::App* get = app.add_subcommand("get", "show one job");
  get->add_option("id", id, "job id")->required();
  get->add_flag("--json", json, "print the job as JSON");

  CLI::App* list = app.add_subcommand("list", "list jobs");
  list->add_option("--state", state, "only jobs in this state")
      ->check(CLI::IsMember({"queued", "running", "succeeded", "failed", "cancelled"},
                            CLI::ignore_case));
  list->add_flag("--json", json, "print {\"jobs\": [...]} as JSON");

  CLI::App* watch = app.add_subcommand("watch",
                                       "follow a job until it ends (exit 1 unless it "
                                       "SUCCEEDED)");
  watch->add_option("id", id, "job id")->required();
  watch->add_flag("--json", json, "print the final job as JSON on stdout");

  CLI::App* cancel = app.add_subcommand("cancel", "cancel a queued or running job");
  cancel->add_option("id", id, "job id")->required();
  cancel->add_flag("--json", json, "print the job as JSON");

  CLI::App* download = app.add_subcommand("download", "download a job's artifacts, verified");
  download->add_option("id", id, "job id")->required();
  download->add_option("-o,--output", out_dir, "directory to write into")->required();
  std::vector<std::string> formats(std::begin(kDownloadFormats), std::end(kDownloadFormats));
  download->add_option("--format", format, "only this artifact kind")
      ->check(CLI::IsMember(formats));

  CLI::App* datasets = app.add_subcommand("datasets", "list the datasets the server knows");
  datasets->add_flag("--json", json, "print as JSON");
  CLI::App* models = app.add_subcommand("models", "list the built-in models");
  models->add_flag("--json", json, "print as JSON");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e, console.out, console.err);
    return rc == 0 ? kExitOk : kExitUsage;
  }

  try {
    auto client = client::QnetClient::Connect(server);
    if (submit->parsed()) return RunSubmit(*client, submit_flags, wait, json, console);
    if (get->parsed()) return RunGet(*client, id, json, console);
    if (list->parsed()) return RunList(*client, state, json, console);
    if (watch->parsed()) return RunWatch(*client, id, json, console);
    if (cancel->parsed()) return RunCancel(*client, id, json, console);
    if (download->parsed()) return RunDownload(*client, id, out_dir, format, console);
    if (datasets->parsed()) return RunDatasets(*client, json, console);
    if (models->parsed()) return RunModels(*client, json, console);
  } catch (const std::exception& e) {
    // Nothing here throws by design; a bad_alloc or the like still gets a message, not abort().
    console.err << "qnet: " << e.what() << "\n";
    return kExitServerError;
  }
  console.err << app.help();
  return kExitUsage;
}

}  // namespace qnet::cli
