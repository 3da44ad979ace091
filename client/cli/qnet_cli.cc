#include "client/cli/qnet_cli.h"

#include <exception>
#include <memory>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "client/cli/artifact_select.h"
#include "client/cli/exit_codes.h"
#include "client/connection_flags.h"

namespace qnet::cli {
namespace {

void AddSubmitFlags(CLI::App& sub, SubmitFlags& f) {
  job::BindJobSpecFlags(
      sub, f.job,
      {.model_help = "zoo:NAME (see `qnet models`), sha256:<hex> of an uploaded model, or the "
                     "path of a TorchScript .pt file to upload",
       .dataset_help = "dataset name the server knows (see `qnet datasets`)"});
  sub.add_option("--priority", f.priority, "higher runs first");
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
  client::ConnectionFlags connection_flags;
  client::BindConnectionFlags(app, connection_flags);

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

  CLI::App* del = app.add_subcommand(
      "delete", "delete a finished job and its artifacts (cancel a queued or running one first)");
  del->add_option("id", id, "job id")->required();
  del->add_flag("--json", json, "print {\"id\", \"deleted\"} as JSON");

  CLI::App* download = app.add_subcommand("download", "download a job's artifacts, verified");
  download->add_option("id", id, "job id")->required();
  download->add_option("-o,--output", out_dir, "directory to write into")->required();
  download->add_option("--format", format,
                       "only this export format's artifacts (see `qnet formats`) or this kind");

  CLI::App* datasets =
      app.add_subcommand("datasets", "list the datasets the server knows, or upload your own");
  datasets->add_flag("--json", json, "print as JSON");
  datasets->require_subcommand(0, 1);
  DatasetUploadFlags upload_flags;
  CLI::App* upload = datasets->add_subcommand(
      "upload",
      "upload a dataset: an image folder (train/<class>/*, optional test/<class>/*), a .tar, "
      ".tar.gz or .zip of one, or an .npz; the server checks it before registering it");
  upload->add_option("path", upload_flags.path, "folder or file")->required();
  upload->add_option("--name", upload_flags.name, "the name jobs give as --dataset")->required();
  upload->add_flag("--replace", upload_flags.replace,
                   "replace your earlier upload of this name when the content differs");
  upload->add_flag("--json", json, "print the dataset's record as JSON on stdout");
  CLI::App* models = app.add_subcommand("models", "list the built-in models");
  models->add_flag("--json", json, "print as JSON");
  CLI::App* formats =
      app.add_subcommand("formats", "list what the server accepts: export and dataset formats");
  formats->add_flag("--json", json, "print as JSON");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e, console.out, console.err);
    return rc == 0 ? kExitOk : kExitUsage;
  }

  absl::StatusOr<client::ConnectionOptions> connection =
      client::ResolveConnection(server, connection_flags);
  if (!connection.ok()) {
    console.err << "qnet: " << connection.status().message() << "\n";
    return kExitUsage;
  }
  try {
    auto client = std::make_unique<client::QnetClient>(client::MakeChannel(*connection), server);
    if (submit->parsed()) return RunSubmit(*client, submit_flags, wait, json, console);
    if (get->parsed()) return RunGet(*client, id, json, console);
    if (list->parsed()) return RunList(*client, state, json, console);
    if (watch->parsed()) return RunWatch(*client, id, json, console);
    if (cancel->parsed()) return RunCancel(*client, id, json, console);
    if (del->parsed()) return RunDelete(*client, id, json, console);
    if (download->parsed()) return RunDownload(*client, id, out_dir, format, console);
    if (upload->parsed()) return RunDatasetUpload(*client, upload_flags, json, console);
    if (datasets->parsed()) return RunDatasets(*client, json, console);
    if (models->parsed()) return RunModels(*client, json, console);
    if (formats->parsed()) return RunFormats(*client, json, console);
  } catch (const std::exception& e) {
    // Nothing here throws by design; a bad_alloc or the like still gets a message, not abort().
    console.err << "qnet: " << e.what() << "\n";
    return kExitServerError;
  }
  console.err << app.help();
  return kExitUsage;
}

}  // namespace qnet::cli
