// The `qnet` subcommands, each a function of a client, its flags and two output streams, returning
// the process exit code (exit_codes.h). They hold the CLI's behaviour; qnet_cli.h only parses flags
// and calls them, and tests call them against a fake server.
//
//   auto client = qnet::client::QnetClient::Connect("127.0.0.1:50051");
//   qnet::cli::Console console{std::cout, std::cerr, /*err_is_tty=*/false};
//   int rc = qnet::cli::RunGet(*client, "job-1", /*json=*/true, console);
#ifndef QNET_CLIENT_CLI_COMMANDS_H_
#define QNET_CLIENT_CLI_COMMANDS_H_

#include <chrono>
#include <ostream>
#include <string>

#include "absl/status/statusor.h"
#include "client/qnet_client.h"
#include "common/job/job_spec_flags.h"

namespace qnet::cli {

// Where a command writes: results on `out`, progress and errors on `err`.
struct Console {
  std::ostream& out;
  std::ostream& err;
  bool err_is_tty = false;
};

struct FollowOptions {
  // A watch stream that breaks (server restart) is re-opened; give up after this long without
  // reaching the server.
  std::chrono::milliseconds reconnect_for{60000};
  // Used instead of WatchJob when the server does not implement it.
  std::chrono::milliseconds poll_interval{1000};
};

// Follows a job to a terminal state, drawing progress on console.err. Returns the final job.
absl::StatusOr<v1::Job> FollowJob(client::QnetClient& client, const std::string& id,
                                  const Console& console, const FollowOptions& options = {});

// `qnet submit`: the job's flags (shared with `qnet-worker run`) and the submission's own.
struct SubmitFlags {
  job::JobSpecFlags job;
  int priority = 0;
  std::string request_id;
};

int RunSubmit(client::QnetClient& client, const SubmitFlags& flags, bool wait, bool json,
              const Console& console);
int RunGet(client::QnetClient& client, const std::string& id, bool json, const Console& console);
// `state` is a JobState name in any case ("running"); empty lists every job.
int RunList(client::QnetClient& client, const std::string& state, bool json,
            const Console& console);
int RunWatch(client::QnetClient& client, const std::string& id, bool json, const Console& console);
int RunCancel(client::QnetClient& client, const std::string& id, bool json, const Console& console);
// `qnet delete ID`: a finished job and its artifacts.
int RunDelete(client::QnetClient& client, const std::string& id, bool json, const Console& console);
// Downloads the job's artifacts (all, or those of `format`) into `dir`, verifying digests.
int RunDownload(client::QnetClient& client, const std::string& id, const std::string& dir,
                const std::string& format, const Console& console);
int RunDatasets(client::QnetClient& client, bool json, const Console& console);
// `qnet datasets upload PATH --name NAME [--replace]`.
struct DatasetUploadFlags {
  std::string path;
  std::string name;
  bool replace = false;
};
// Uploads a folder (packed as a .tar), archive or .npz and registers it; prints the record.
int RunDatasetUpload(client::QnetClient& client, const DatasetUploadFlags& flags, bool json,
                     const Console& console);
int RunModels(client::QnetClient& client, bool json, const Console& console);
// What the server accepts (GetCapabilities): export formats, dataset formats, bit ranges.
int RunFormats(client::QnetClient& client, bool json, const Console& console);

}  // namespace qnet::cli

#endif  // QNET_CLIENT_CLI_COMMANDS_H_
