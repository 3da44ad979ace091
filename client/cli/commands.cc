#include "client/cli/commands.h"

#include <filesystem>
#include <thread>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "client/cli/artifact_select.h"
#include "client/cli/exit_codes.h"
#include "client/cli/job_json.h"
#include "client/cli/job_report.h"
#include "client/cli/progress_line.h"
#include "client/cli/terminal_text.h"
#include "common/job/job_spec.h"
#include "nlohmann/json.hpp"

namespace qnet::cli {
namespace {

namespace fs = std::filesystem;
using client::IsTerminal;
using client::QnetClient;

// Prints "qnet CMD: message" and returns the exit code for the error.
int Fail(const Console& console, absl::string_view command, const absl::Status& status) {
  // The message usually comes from the server.
  console.err << "qnet " << command << ": " << TerminalSafe(status.message()) << "\n";
  return ExitCodeFor(status);
}

int Usage(const Console& console, absl::string_view command, absl::string_view message) {
  console.err << "qnet " << command << ": " << message << "\n";
  return kExitUsage;
}

// Worth reconnecting for: the server restarted or the network hiccuped.
bool Transient(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kDeadlineExceeded:
    case absl::StatusCode::kAborted:
    case absl::StatusCode::kUnknown:
    case absl::StatusCode::kInternal:
      return true;
    default:
      return false;
  }
}

// The end of a followed job: the table and artifacts, or the error.
void PrintOutcome(const v1::Job& job, std::ostream& os) {
  if (job.state() == v1::SUCCEEDED) {
    os << "job " << TerminalSafe(job.id()) << " SUCCEEDED";
    if (job.attempt() > 1) os << " at attempt " << job.attempt();
    os << "\n" << FormatMetricsTable(job.metrics()) << FormatArtifacts(job.artifacts());
    return;
  }
  os << "job " << TerminalSafe(job.id()) << " " << v1::JobState_Name(job.state());
  if (!job.error().empty()) os << ": " << TerminalSafe(job.error());
  os << "\n";
}

// After FollowJob: the outcome on stdout (or stderr when stdout carries JSON), the exit code.
int FinishFollow(const absl::StatusOr<v1::Job>& job, absl::string_view command, bool json,
                 const Console& console) {
  if (!job.ok()) return Fail(console, command, job.status());
  PrintOutcome(*job, json ? console.err : console.out);
  if (json) console.out << JobToJson(*job) << "\n";
  return ExitCodeForFinalState(job->state());
}

}  // namespace

absl::StatusOr<v1::Job> FollowJob(QnetClient& client, const std::string& id, const Console& console,
                                  const FollowOptions& options) {
  using Clock = std::chrono::steady_clock;
  ProgressPrinter printer(console.err, console.err_is_tty);
  v1::Job last;
  bool have = false;
  bool poll = false;
  auto last_contact = Clock::now();
  std::chrono::milliseconds backoff{250};
  auto on_snapshot = [&](const v1::Job& job) {
    printer.Update(job);
    last = job;
    have = true;
    last_contact = Clock::now();
    backoff = std::chrono::milliseconds(250);
    return true;
  };
  while (true) {
    absl::Status status;
    if (!poll) {
      status = client.WatchJob(id, on_snapshot);
      if (status.code() == absl::StatusCode::kUnimplemented) {
        poll = true;
        continue;
      }
    } else {
      absl::StatusOr<v1::Job> job = client.GetJob(id);
      status = job.status();
      if (job.ok()) on_snapshot(*job);
    }
    if (have && IsTerminal(last.state())) break;
    if (!status.ok() && !Transient(status)) {
      printer.Finish();
      return status;
    }
    if (Clock::now() - last_contact > options.reconnect_for) {
      printer.Finish();
      if (!status.ok()) return status;
      return absl::UnavailableError(
          absl::StrCat("job ", id, ": no news from qnetd at ", client.address(), " for too long"));
    }
    std::this_thread::sleep_for(poll ? options.poll_interval : backoff);
    if (!poll) backoff = std::min(backoff * 2, std::chrono::milliseconds(5000));
  }
  printer.Finish();
  // The watch's last snapshot may predate the final record; the stored job has everything.
  absl::StatusOr<v1::Job> final_job = client.GetJob(id);
  if (final_job.ok() && IsTerminal(final_job->state())) return *final_job;
  return last;
}

int RunSubmit(QnetClient& client, const SubmitFlags& flags, bool wait, bool json,
              const Console& console) {
  const std::string& model = flags.job.model;
  std::string model_ref = model;
  if (!job::IsModelReference(model)) {
    std::error_code ec;
    if (!fs::is_regular_file(model, ec)) {
      return Usage(console, "submit",
                   absl::StrCat("model file '", model,
                                "' does not exist; give zoo:NAME for a built-in model (see qnet "
                                "models) or the path of a TorchScript or ONNX file"));
    }
    absl::StatusOr<client::UploadResult> uploaded = client.UploadFile(model, "model");
    if (!uploaded.ok()) return Fail(console, "submit", uploaded.status());
    console.err << (uploaded->already_present ? "model already on the server: " : "uploaded ")
                << model << " (" << FormatBytes(uploaded->size_bytes) << ") as "
                << TerminalSafe(uploaded->digest) << "\n";
    model_ref = uploaded->digest;
  }
  absl::StatusOr<v1::JobSpec> spec = job::BuildJobSpec(flags.job, model_ref);
  if (!spec.ok()) return Usage(console, "submit", spec.status().message());
  spec->set_priority(flags.priority);

  absl::StatusOr<v1::Job> job = client.SubmitJob(*spec, flags.request_id);
  if (!job.ok()) return Fail(console, "submit", job.status());
  if (!wait) {
    if (json) {
      console.out << JobToJson(*job) << "\n";
    } else {
      const std::string id = TerminalSafe(job->id());
      console.out << "submitted job " << id << " (" << v1::JobState_Name(job->state())
                  << ")\nfollow it with: qnet watch " << id << "\n";
    }
    return kExitOk;
  }
  console.err << "job " << TerminalSafe(job->id()) << " submitted\n";
  return FinishFollow(FollowJob(client, job->id(), console), "submit", json, console);
}

int RunGet(QnetClient& client, const std::string& id, bool json, const Console& console) {
  absl::StatusOr<v1::Job> job = client.GetJob(id);
  if (!job.ok()) return Fail(console, "get", job.status());
  console.out << (json ? JobToJson(*job) + "\n" : FormatJobSummary(*job));
  return kExitOk;
}

int RunList(QnetClient& client, const std::string& state, bool json, const Console& console) {
  v1::JobState filter = v1::JOB_STATE_UNSPECIFIED;
  if (!state.empty() && !v1::JobState_Parse(absl::AsciiStrToUpper(state), &filter)) {
    return Usage(console, "list",
                 absl::StrCat("unknown state '", state,
                              "'; use queued, running, succeeded, failed or cancelled"));
  }
  absl::StatusOr<std::vector<v1::Job>> jobs = client.ListJobs(filter);
  if (!jobs.ok()) return Fail(console, "list", jobs.status());
  console.out << (json ? JobsToJson(*jobs) + "\n" : FormatJobTable(*jobs));
  return kExitOk;
}

int RunWatch(QnetClient& client, const std::string& id, bool json, const Console& console) {
  return FinishFollow(FollowJob(client, id, console), "watch", json, console);
}

int RunCancel(QnetClient& client, const std::string& id, bool json, const Console& console) {
  absl::StatusOr<v1::Job> job = client.CancelJob(id);
  if (!job.ok()) return Fail(console, "cancel", job.status());
  if (json) {
    console.out << JobToJson(*job) << "\n";
  } else if (IsTerminal(job->state())) {
    console.out << "job " << TerminalSafe(job->id()) << " " << v1::JobState_Name(job->state())
                << "\n";
  } else {
    console.out << "job " << TerminalSafe(job->id()) << ": cancel requested ("
                << v1::JobState_Name(job->state()) << "; its worker stops at the next step)\n";
  }
  return kExitOk;
}

int RunDelete(QnetClient& client, const std::string& id, bool json, const Console& console) {
  if (absl::Status s = client.DeleteJob(id); !s.ok()) return Fail(console, "delete", s);
  if (json) {
    console.out << nlohmann::json{{"id", id}, {"deleted", true}}.dump(2) << "\n";
  } else {
    console.out << "job " << TerminalSafe(id) << " deleted\n";
  }
  return kExitOk;
}

int RunDownload(QnetClient& client, const std::string& id, const std::string& dir,
                const std::string& format, const Console& console) {
  absl::StatusOr<v1::Job> job = client.GetJob(id);
  if (!job.ok()) return Fail(console, "download", job.status());
  // A server without GetCapabilities still serves downloads by artifact kind.
  absl::StatusOr<v1::Capabilities> capabilities = client.GetCapabilities();
  if (!capabilities.ok() && !absl::IsUnimplemented(capabilities.status())) {
    return Fail(console, "download", capabilities.status());
  }
  const std::vector<v1::Artifact> artifacts =
      SelectArtifacts(*job, format, capabilities.value_or(v1::Capabilities()));
  if (artifacts.empty()) {
    const std::string state = v1::JobState_Name(job->state());
    if (job->state() != v1::SUCCEEDED) {
      console.err << "qnet download: job " << id << " is " << state
                  << "; artifacts exist once it has SUCCEEDED\n";
      return job->state() == v1::FAILED || job->state() == v1::CANCELLED ? kExitJobFailed
                                                                         : kExitUsage;
    }
    return Usage(
        console, "download",
        absl::StrCat("job ", id, " has no ", format.empty() ? "" : format + " ", "artifacts"));
  }
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) {
    return Usage(console, "download",
                 absl::StrCat("cannot create directory ", dir, ": ", ec.message()));
  }
  const std::vector<std::string> names = UniqueFileNames(artifacts);
  for (size_t i = 0; i < artifacts.size(); ++i) {
    const std::string path = (fs::path(dir) / names[i]).string();
    absl::StatusOr<int64_t> size = client.DownloadBlob(artifacts[i].digest(), path);
    if (!size.ok()) return Fail(console, "download", size.status());
    console.out << TerminalSafe(path) << "  " << TerminalSafe(artifacts[i].kind()) << "  "
                << FormatBytes(*size) << "  " << TerminalSafe(artifacts[i].digest())
                << " verified\n";
  }
  return kExitOk;
}

int RunDatasets(QnetClient& client, bool json, const Console& console) {
  absl::StatusOr<std::vector<v1::Dataset>> datasets = client.ListDatasets();
  if (!datasets.ok()) return Fail(console, "datasets", datasets.status());
  if (json) {
    v1::ListDatasetsResponse response;
    for (const auto& d : *datasets) *response.add_datasets() = d;
    console.out << MessageToJson(response) << "\n";
  } else {
    console.out << FormatDatasetTable(*datasets);
  }
  return kExitOk;
}

int RunDatasetUpload(QnetClient& client, const DatasetUploadFlags& flags, bool json,
                     const Console& console) {
  absl::StatusOr<client::DatasetUpload> up =
      client.UploadDataset(flags.path, flags.name, flags.replace);
  if (!up.ok()) return Fail(console, "datasets upload", up.status());
  console.err << (up->blob.already_present ? "already on the server: " : "uploaded ") << flags.path
              << " (" << FormatBytes(up->blob.size_bytes) << ") as "
              << TerminalSafe(up->blob.digest);
  if (up->blob.resumed_from > 0) {
    console.err << ", resumed after " << FormatBytes(up->blob.resumed_from);
  }
  console.err << "\n";
  if (json) {
    console.out << MessageToJson(up->dataset) << "\n";
  } else {
    console.out << FormatDatasetTable({up->dataset})
                << "classes: " << TerminalSafe(absl::StrJoin(up->dataset.class_names(), ", "))
                << "\n"
                << "use it with: qnet submit --dataset " << TerminalSafe(up->dataset.name())
                << " ...\n";
  }
  return kExitOk;
}

int RunFormats(QnetClient& client, bool json, const Console& console) {
  absl::StatusOr<v1::Capabilities> c = client.GetCapabilities();
  if (!c.ok()) return Fail(console, "formats", c.status());
  if (json) {
    console.out << MessageToJson(*c) << "\n";
    return kExitOk;
  }
  console.out << "export formats (submit --export, download --format):\n";
  for (const v1::ExportFormat& f : c->export_formats()) {
    console.out << absl::StrFormat("  %-12s %s\n", TerminalSafe(f.name()),
                                   TerminalSafe(f.description()));
  }
  console.out << "dataset formats: " << TerminalSafe(absl::StrJoin(c->dataset_formats(), ", "))
              << "\n"
              << "model sources: " << TerminalSafe(absl::StrJoin(c->model_sources(), ", ")) << "\n"
              << "weight bits " << c->weight_bits().min() << ".." << c->weight_bits().max()
              << ", activation bits " << c->activation_bits().min() << ".."
              << c->activation_bits().max() << " (0: float)\n";
  return kExitOk;
}

int RunModels(QnetClient& client, bool json, const Console& console) {
  absl::StatusOr<std::vector<v1::Model>> models = client.ListModels();
  if (!models.ok()) return Fail(console, "models", models.status());
  if (json) {
    v1::ListModelsResponse response;
    for (const auto& m : *models) *response.add_models() = m;
    console.out << MessageToJson(response) << "\n";
  } else {
    console.out << FormatModelTable(*models);
  }
  return kExitOk;
}

}  // namespace qnet::cli
