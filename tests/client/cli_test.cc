// The `qnet` CLI: its pure pieces (flags -> JobSpec, progress line, tables, JSON, exit codes,
// artifact names) and its commands against the in-process fake server.
#include <filesystem>
#include <fstream>
#include <sstream>

#include "client/cli/artifact_select.h"
#include "client/cli/commands.h"
#include "client/cli/exit_codes.h"
#include "client/cli/job_json.h"
#include "client/cli/job_report.h"
#include "client/cli/progress_line.h"
#include "client/cli/qnet_cli.h"
#include "client/cli/terminal_text.h"
#include "common/digest.h"
#include "common/job/catalog.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/client/fake_qnet_server.h"

namespace qnet::cli {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

v1::Job RunningJob() {
  v1::Job job;
  job.set_id("job-1");
  job.set_state(v1::RUNNING);
  job.set_attempt(1);
  v1::Progress* p = job.mutable_progress();
  p->set_phase("joint");
  p->set_epoch(3);
  p->set_total_epochs(5);
  p->set_step(50);
  p->set_steps_per_epoch(100);
  p->set_loss(0.41234);
  p->set_temperature(12.3);
  p->set_accuracy(0.871);
  p->set_images_per_second(1234);
  p->set_eta_seconds(83);
  return job;
}

TEST(ProgressLineTest, Pieces) {
  EXPECT_EQ(FormatDuration(42), "42s");
  EXPECT_EQ(FormatDuration(83), "1m23s");
  EXPECT_EQ(FormatDuration(3720), "1h02m");
  EXPECT_EQ(FormatDuration(-1), "-");
  EXPECT_EQ(FormatBar(0.5, 10), "[#####-----]");
  EXPECT_EQ(FormatBar(2, 4), "[####]");
  EXPECT_EQ(FormatBar(-1, 4), "[----]");
  EXPECT_DOUBLE_EQ(RunFraction(RunningJob().progress()), 0.5);  // (2 + 0.5) / 5
  EXPECT_DOUBLE_EQ(RunFraction(v1::Progress()), 0);
}

TEST(ProgressLineTest, RunningLine) {
  EXPECT_EQ(FormatProgressLine(RunningJob()),
            "RUNNING joint 3/5 [##########----------]  50% loss 0.4123 T 12.3 acc 87.1% 1234 "
            "img/s ETA 1m23s");
  v1::Job queued;
  queued.set_state(v1::QUEUED);
  EXPECT_EQ(FormatProgressLine(queued), "QUEUED waiting for a worker");
  v1::Job retried = RunningJob();
  retried.set_attempt(2);
  EXPECT_THAT(FormatProgressLine(retried), HasSubstr("RUNNING (attempt 2) joint 3/5"));
}

TEST(ProgressLineTest, PrinterRedrawsOnATtyAndLogsChangesElsewhere) {
  std::ostringstream tty;
  ProgressPrinter on_tty(tty, true);
  on_tty.Update(RunningJob());
  on_tty.Update(RunningJob());
  on_tty.Finish();
  const std::string drawn = tty.str();
  EXPECT_EQ(std::count(drawn.begin(), drawn.end(), '\r'), 2);
  EXPECT_EQ(drawn.back(), '\n');

  std::ostringstream log;
  ProgressPrinter in_log(log, false);
  v1::Job job = RunningJob();
  in_log.Update(job);
  job.mutable_progress()->set_step(60);  // same epoch: no new line
  in_log.Update(job);
  job.mutable_progress()->set_epoch(4);
  in_log.Update(job);
  in_log.Finish();
  const std::string logged = log.str();
  EXPECT_EQ(std::count(logged.begin(), logged.end(), '\n'), 2);
  EXPECT_THAT(log.str(), HasSubstr("RUNNING attempt 1: joint epoch 3/5 loss 0.4123"));
  EXPECT_THAT(log.str(), Not(HasSubstr("\r")));
}

TEST(JobReportTest, MetricsTable) {
  v1::Metrics m;
  m.set_float_top1(0.9012);
  m.set_float_top5(0.998);
  m.set_quantized_top1(0.8734);
  m.set_quantized_top5(0.995);
  m.set_soft_top1(0.88);
  m.set_hard_top1(0.86);
  m.set_float_size_bytes(1700000);
  m.set_packed_size_bytes(110000);
  m.set_compression_ratio(15.46);
  m.mutable_input_normalization()->add_mean(0.2860);
  m.mutable_input_normalization()->add_std(0.3530);
  const std::string table = FormatMetricsTable(m);
  EXPECT_THAT(table, HasSubstr("inputs: (pixel/255 - mean) / std, mean 0.286 std 0.353"));
  EXPECT_THAT(table, HasSubstr("float"));
  EXPECT_THAT(table, HasSubstr("quantized"));
  EXPECT_THAT(table, HasSubstr("top-1"));
  EXPECT_THAT(table, HasSubstr("90.12%"));
  EXPECT_THAT(table, HasSubstr("87.34%"));
  EXPECT_THAT(table, HasSubstr("1.6 MiB"));
  EXPECT_THAT(table, HasSubstr("107.4 KiB"));
  EXPECT_THAT(table, HasSubstr("15.5x"));
  EXPECT_EQ(FormatBytes(512), "512 B");
  EXPECT_EQ(FormatPercent(0), "-");
  EXPECT_THAT(table, HasSubstr("model.pt top-1"));
  EXPECT_THAT(table, Not(HasSubstr("classes")));  // none recorded
  m.set_torchscript_top1(0.8733);
  m.mutable_effective_spec()->set_input_shape("3x32x32");
  v1::Preprocessing& p = *m.mutable_effective_spec()->mutable_preprocessing();
  p.set_resize_size(32);
  p.set_random_resized_crop(true);
  p.set_crop_scale_min(0.5);
  p.set_horizontal_flip(true);
  p.set_holdout_fraction(0.1);
  for (const char* c : {"cat", "dog"}) m.add_class_names(c);
  const std::string full = FormatMetricsTable(m);
  EXPECT_THAT(full, HasSubstr("87.33%"));
  EXPECT_THAT(full, HasSubstr("input 3x32x32: evaluation resize 32 + center crop; training "
                              "random-resized-crop 0.50..1.00 + flip; test = 10% of train held "
                              "out"));
  EXPECT_THAT(full, HasSubstr("classes (2): cat, dog"));
}

TEST(JobReportTest, TablesAndSummary) {
  v1::Job job = RunningJob();
  job.mutable_spec()->set_model("zoo:lenet5");
  job.mutable_spec()->set_dataset("fashion-mnist");
  job.mutable_spec()->set_weight_bits(2);
  job.mutable_spec()->set_activation_bits(2);
  EXPECT_THAT(FormatJobTable({job}), HasSubstr("job-1  RUNNING  zoo:lenet5  fashion-mnist  W2A2"));
  EXPECT_THAT(FormatJobSummary(job), HasSubstr("RUNNING joint 3/5"));
  EXPECT_EQ(FormatJobTable({}), "no jobs\n");
}

TEST(TerminalTextTest, ControlsAreShownAsVisibleEscapes) {
  EXPECT_EQ(TerminalSafe("plain caf\xC3\xA9 \xE2\x82\xAC"), "plain caf\xC3\xA9 \xE2\x82\xAC");
  EXPECT_EQ(TerminalSafe("\x1b]0;owned\x07"), "\\x1b]0;owned\\x07");  // window title
  EXPECT_EQ(TerminalSafe("\x1b[2J\x1b[H"), "\\x1b[2J\\x1b[H");        // clear screen
  EXPECT_EQ(TerminalSafe("a\nb\rc\td\x7f"), "a\\nb\\rc\\td\\x7f");
  EXPECT_EQ(TerminalSafe("\xC2\x9B"
                         "31m"),
            "\\x9b31m");                                                   // C1 CSI
  EXPECT_EQ(TerminalSafe("abc\xE2\x80\xAEgpj.exe"), "abc\\u202egpj.exe");  // bidi override
  EXPECT_EQ(TerminalSafe("bad\xFF"), "bad\xEF\xBF\xBD");
}

TEST(JobReportTest, ServerTextCannotDriveTheTerminal) {
  v1::Job job = RunningJob();
  job.set_id("job-1\x1b[2J");
  job.set_worker_id("w\x1b]0;pwned\x07");
  job.mutable_progress()->set_phase("joint\x1b[H");
  job.mutable_spec()->set_model("zoo:lenet5\x1b[31m");
  job.mutable_spec()->set_dataset("d\r");
  job.set_error("boom\r\x1b[KSUCCEEDED 99.9%");
  job.mutable_metrics()->set_device("cuda\x1b[8m");
  job.mutable_metrics()->add_class_names("cat\x1b[1A");
  v1::Artifact* a = job.add_artifacts();
  a->set_kind("onnx\x1b[2K");
  a->set_filename("m.onnx\x07");
  v1::Job preparing = job;
  preparing.mutable_progress()->set_epoch(0);
  v1::Job failed = job;
  failed.set_state(v1::FAILED);
  for (const std::string& text :
       {FormatJobSummary(job), FormatJobTable({job, failed}), FormatProgressLine(job),
        FormatProgressLine(preparing), FormatProgressEvent(job), FormatJobSummary(failed),
        FormatMetricsTable(job.metrics()), FormatArtifacts(job.artifacts())}) {
    EXPECT_EQ(text.find_first_of("\x1b\r\x07"), std::string::npos) << text;
  }
  EXPECT_THAT(FormatJobSummary(failed), HasSubstr("error: boom\\r\\x1b[KSUCCEEDED 99.9%"));
}

TEST(JobJsonTest, UsesProtoNamesAndPrintsZeros) {
  v1::Job job;
  job.set_id("job-9");
  job.set_state(v1::SUCCEEDED);
  nlohmann::json j = nlohmann::json::parse(JobToJson(job));
  EXPECT_EQ(j["id"], "job-9");
  EXPECT_EQ(j["state"], "SUCCEEDED");
  EXPECT_EQ(j["attempt"], 0);
  EXPECT_EQ(j["progress"]["epoch"], 0);
  EXPECT_EQ(j["metrics"]["quantized_top1"], 0);
  nlohmann::json list = nlohmann::json::parse(JobsToJson({job, job}));
  EXPECT_EQ(list["jobs"].size(), 2u);
  EXPECT_EQ(list["jobs"][1]["id"], "job-9");
}

TEST(ExitCodesTest, Mapping) {
  EXPECT_EQ(ExitCodeFor(absl::OkStatus()), kExitOk);
  EXPECT_EQ(ExitCodeFor(absl::InvalidArgumentError("bits")), kExitUsage);
  EXPECT_EQ(ExitCodeFor(absl::NotFoundError("job")), kExitUsage);
  EXPECT_EQ(ExitCodeFor(absl::UnavailableError("down")), kExitServerError);
  EXPECT_EQ(ExitCodeFor(absl::InternalError("bug")), kExitServerError);
  EXPECT_EQ(ExitCodeForFinalState(v1::SUCCEEDED), kExitOk);
  EXPECT_EQ(ExitCodeForFinalState(v1::FAILED), kExitJobFailed);
  EXPECT_EQ(ExitCodeForFinalState(v1::CANCELLED), kExitJobFailed);
  EXPECT_EQ(ExitCodeForFinalState(v1::RUNNING), kExitServerError);
}

TEST(ArtifactSelectTest, NamesAreSafeAndUnique) {
  v1::Artifact a;
  a.set_kind("torchscript");
  a.set_filename("../../etc/passwd");
  a.set_digest("sha256:0123456789abcdef");
  EXPECT_EQ(ArtifactFileName(a), "passwd");
  a.set_filename("..");
  EXPECT_EQ(ArtifactFileName(a), "torchscript-0123456789ab");
  a.set_filename("model w2.pt");
  EXPECT_EQ(ArtifactFileName(a), "model_w2.pt");
  v1::Artifact b = a;
  EXPECT_THAT(UniqueFileNames({a, b}), ElementsAre("model_w2.pt", "model_w2-2.pt"));

  v1::Job job;
  for (const char* kind : {"torchscript", "onnx", "packed", "manifest", "metrics"}) {
    job.add_artifacts()->set_kind(kind);
  }
  // What each export format brings comes from the server's capabilities, not from the CLI.
  const v1::Capabilities caps = job::Capabilities({});
  EXPECT_EQ(SelectArtifacts(job, "", caps).size(), 5u);
  EXPECT_EQ(SelectArtifacts(job, "packed", caps).size(), 2u);
  EXPECT_EQ(SelectArtifacts(job, "onnx", caps).size(), 1u);
  EXPECT_EQ(SelectArtifacts(job, "manifest", caps).size(), 1u);  // an artifact kind
  EXPECT_EQ(SelectArtifacts(job, "packed", v1::Capabilities()).size(), 1u);
  EXPECT_EQ(SelectArtifacts(job, "nope", caps).size(), 0u);
}

// --- commands against the fake server ---

class CommandsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("qnet_cli_test_" + std::to_string(getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    client_ = client::QnetClient::Connect(server_.address());
  }
  void TearDown() override { fs::remove_all(dir_); }

  Console console() { return Console{out_, err_, false}; }

  // Runs the real argv parser against the fake server.
  int Cli(std::vector<std::string> args) {
    args.insert(args.begin(), {"qnet", "--server", server_.address()});
    std::vector<const char*> argv;
    for (const std::string& a : args) argv.push_back(a.c_str());
    return QnetMain(static_cast<int>(argv.size()), argv.data(), console());
  }

  testing::FakeQnetServer server_;
  fs::path dir_;
  std::unique_ptr<client::QnetClient> client_;
  std::ostringstream out_, err_;
};

TEST_F(CommandsTest, SubmitUploadsALocalModelAndSubmitsItsDigest) {
  const std::string model = (dir_ / "net.pt").string();
  std::ofstream(model, std::ios::binary) << "torchscript bytes";
  EXPECT_EQ(Cli({"submit", "--model", model, "--dataset", "fashion-mnist", "--weight-bits", "2",
                 "--distill-weight", "0.25", "--input-mean", "0.5", "--input-std", "0.5",
                 "--request-id", "r1", "--json"}),
            kExitOk);
  auto state = server_.Lock();
  ASSERT_EQ(state->submits.size(), 1u);
  EXPECT_EQ(state->submits[0].spec().model(), DigestOf("torchscript bytes"));
  EXPECT_EQ(state->submits[0].spec().weight_bits(), 2);
  EXPECT_DOUBLE_EQ(state->submits[0].spec().training().distill_weight(), 0.25);
  EXPECT_THAT(state->submits[0].spec().input_normalization().mean(), ElementsAre(0.5));
  EXPECT_THAT(state->submits[0].spec().input_normalization().std(), ElementsAre(0.5));
  EXPECT_EQ(state->submits[0].request_id(), "r1");
  EXPECT_EQ(state->upload_kinds, std::vector<std::string>{"model"});
  nlohmann::json j = nlohmann::json::parse(out_.str());
  EXPECT_EQ(j["id"], "job-1");
  EXPECT_EQ(j["state"], "QUEUED");
}

TEST_F(CommandsTest, SubmitOfAMissingModelFileIsAUsageError) {
  EXPECT_EQ(Cli({"submit", "--model", (dir_ / "nope.pt").string(), "--dataset", "x"}), kExitUsage);
  EXPECT_THAT(err_.str(), HasSubstr("does not exist"));
  EXPECT_TRUE(server_.Lock()->submits.empty());
}

TEST_F(CommandsTest, ServerRefusalIsPrintedWithExitTwo) {
  server_.Lock()->submit_error =
      grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "unknown dataset 'no-such-data'");
  EXPECT_EQ(Cli({"submit", "--model", "zoo:lenet5", "--dataset", "no-such-data"}), kExitUsage);
  EXPECT_THAT(err_.str(), HasSubstr("unknown dataset 'no-such-data'"));
}

TEST_F(CommandsTest, FlagErrorsExitTwo) {
  EXPECT_EQ(Cli({"submit", "--dataset", "x"}), kExitUsage);  // --model missing
  EXPECT_EQ(Cli({"submit", "--model", "zoo:lenet5", "--dataset", "x", "--weight-bits", "two"}),
            kExitUsage);
  EXPECT_EQ(Cli({"submit", "--model", "zoo:lenet5", "--dataset", "x", "--distill-weight", "half"}),
            kExitUsage);
  EXPECT_EQ(Cli({"frobnicate"}), kExitUsage);
  EXPECT_EQ(Cli({"list", "--state", "sleeping"}), kExitUsage);
  EXPECT_EQ(Cli({"--help"}), kExitOk);
}

std::vector<v1::Job> Script(v1::JobState final_state) {
  std::vector<v1::Job> script;
  for (int epoch = 1; epoch <= 2; ++epoch) {
    v1::Job j = RunningJob();
    j.mutable_progress()->set_epoch(epoch);
    j.mutable_progress()->set_total_epochs(2);
    script.push_back(j);
  }
  v1::Job done = script.back();
  done.set_state(final_state);
  if (final_state == v1::SUCCEEDED) {
    done.mutable_metrics()->set_quantized_top1(0.87);
    v1::Artifact* a = done.add_artifacts();
    a->set_kind("torchscript");
    a->set_filename("model.pt");
  } else {
    done.set_error("engine: out of memory");
  }
  script.push_back(done);
  return script;
}

TEST_F(CommandsTest, SubmitWaitJsonPrintsOnlyTheFinalJobOnStdout) {
  server_.Lock()->watch_script = Script(v1::SUCCEEDED);
  EXPECT_EQ(Cli({"submit", "--model", "zoo:lenet5", "--dataset", "x", "--wait", "--json"}),
            kExitOk);
  nlohmann::json j = nlohmann::json::parse(out_.str());  // throws (fails) on any extra text
  EXPECT_EQ(j["state"], "SUCCEEDED");
  EXPECT_DOUBLE_EQ(j["metrics"]["quantized_top1"].get<double>(), 0.87);
  EXPECT_THAT(err_.str(), HasSubstr("joint epoch 1/2"));
  EXPECT_THAT(err_.str(), HasSubstr("87.00%"));
  EXPECT_THAT(err_.str(), HasSubstr("model.pt"));
}

TEST_F(CommandsTest, WatchExitsOneWhenTheJobFailed) {
  ASSERT_TRUE(client_->SubmitJob(v1::JobSpec(), "").ok());
  server_.Lock()->watch_script = Script(v1::FAILED);
  EXPECT_EQ(Cli({"watch", "job-1"}), kExitJobFailed);
  EXPECT_THAT(out_.str(), HasSubstr("FAILED: engine: out of memory"));
}

TEST_F(CommandsTest, WatchPrintsAWorkersErrorWithoutItsEscapes) {
  ASSERT_TRUE(client_->SubmitJob(v1::JobSpec(), "").ok());
  std::vector<v1::Job> script = Script(v1::FAILED);
  script.back().set_error("\x1b]0;owned\x07\x1b[2J");
  server_.Lock()->watch_script = script;
  EXPECT_EQ(Cli({"watch", "job-1"}), kExitJobFailed);
  EXPECT_THAT(out_.str(), HasSubstr("FAILED: \\x1b]0;owned\\x07\\x1b[2J"));
  EXPECT_EQ(out_.str().find('\x1b'), std::string::npos);
}

TEST_F(CommandsTest, WatchOfAnUnknownJobExitsTwo) {
  EXPECT_EQ(Cli({"watch", "job-404"}), kExitUsage);
  EXPECT_THAT(err_.str(), HasSubstr("job-404 not found"));
}

TEST_F(CommandsTest, UnreachableServerExitsThree) {
  std::vector<const char*> argv = {"qnet", "--server", "127.0.0.1:1", "list"};
  EXPECT_EQ(QnetMain(4, argv.data(), console()), kExitServerError);
  EXPECT_THAT(err_.str(), HasSubstr("cannot reach qnetd at 127.0.0.1:1"));
}

TEST_F(CommandsTest, ListJsonHasEveryJob) {
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(client_->SubmitJob(v1::JobSpec(), "").ok());
  EXPECT_EQ(Cli({"list", "--json"}), kExitOk);
  nlohmann::json j = nlohmann::json::parse(out_.str());
  EXPECT_EQ(j["jobs"].size(), 3u);
  EXPECT_EQ(Cli({"list", "--state", "running", "--json"}), kExitOk);
}

TEST_F(CommandsTest, DownloadWritesEveryArtifactVerified) {
  ASSERT_TRUE(client_->SubmitJob(v1::JobSpec(), "").ok());
  {
    const std::string ts = "scripted model", onnx = "onnx graph";
    auto state = server_.Lock();
    v1::Job& job = state->jobs["job-1"];
    job.set_state(v1::SUCCEEDED);
    for (auto [kind, name, content] :
         {std::tuple{"torchscript", "m.pt", ts}, std::tuple{"onnx", "m.onnx", onnx},
          std::tuple{"packed", "m.qnet", std::string("codes")},
          std::tuple{"manifest", "manifest.json", std::string("{}")}}) {
      v1::Artifact* a = job.add_artifacts();
      a->set_kind(kind);
      a->set_filename(name);
      a->set_digest(DigestOf(content));
      state->blobs[DigestOf(content)] = content;
    }
  }
  const std::string out_dir = (dir_ / "art").string();
  EXPECT_EQ(Cli({"download", "job-1", "-o", out_dir}), kExitOk) << err_.str();
  EXPECT_TRUE(fs::exists(out_dir + "/m.pt"));
  EXPECT_TRUE(fs::exists(out_dir + "/m.onnx"));

  const std::string only = (dir_ / "only").string();
  EXPECT_EQ(Cli({"download", "job-1", "-o", only, "--format", "onnx"}), kExitOk);
  EXPECT_FALSE(fs::exists(only + "/m.pt"));
  EXPECT_TRUE(fs::exists(only + "/m.onnx"));

  // The server's capabilities say that the packed format brings its manifest.
  const std::string packed = (dir_ / "packed").string();
  EXPECT_EQ(Cli({"download", "job-1", "-o", packed, "--format", "packed"}), kExitOk);
  EXPECT_TRUE(fs::exists(packed + "/m.qnet"));
  EXPECT_TRUE(fs::exists(packed + "/manifest.json"));
  EXPECT_FALSE(fs::exists(packed + "/m.onnx"));
}

TEST_F(CommandsTest, FormatsListsWhatTheServerAccepts) {
  EXPECT_EQ(Cli({"formats"}), kExitOk) << err_.str();
  EXPECT_THAT(out_.str(), HasSubstr("packed"));
  EXPECT_THAT(out_.str(), HasSubstr("dataset formats: idx"));
  EXPECT_THAT(out_.str(), HasSubstr("weight bits 1..8"));
  out_.str("");
  EXPECT_EQ(Cli({"formats", "--json"}), kExitOk) << err_.str();
  const nlohmann::json j = nlohmann::json::parse(out_.str());
  EXPECT_EQ(j["export_formats"].size(), 4u);
}

TEST_F(CommandsTest, DownloadOfAQueuedJobSaysWhy) {
  ASSERT_TRUE(client_->SubmitJob(v1::JobSpec(), "").ok());
  EXPECT_EQ(Cli({"download", "job-1", "-o", (dir_ / "a").string()}), kExitUsage);
  EXPECT_THAT(err_.str(), HasSubstr("QUEUED"));
}

TEST_F(CommandsTest, GetCancelDatasetsModels) {
  ASSERT_TRUE(client_->SubmitJob(v1::JobSpec(), "").ok());
  EXPECT_EQ(Cli({"get", "job-1", "--json"}), kExitOk);
  EXPECT_EQ(nlohmann::json::parse(out_.str())["state"], "QUEUED");
  out_.str("");
  EXPECT_EQ(Cli({"cancel", "job-1"}), kExitOk);
  EXPECT_THAT(out_.str(), HasSubstr("CANCELLED"));
  EXPECT_EQ(Cli({"datasets"}), kExitOk);
  EXPECT_THAT(out_.str(),
              HasSubstr("fashion-mnist  operator  idx     1x28x28  10       ?      10000"));
  EXPECT_EQ(Cli({"models"}), kExitOk);
  EXPECT_THAT(out_.str(), HasSubstr("zoo:lenet5"));
  EXPECT_EQ(Cli({"get", "job-404"}), kExitUsage);
}

TEST_F(CommandsTest, DatasetsUploadPacksAFolderAndRegistersIt) {
  fs::create_directories(dir_ / "photos/train/cat");
  std::ofstream(dir_ / "photos/train/cat/1.png", std::ios::binary) << "png bytes";
  EXPECT_EQ(Cli({"datasets", "upload", (dir_ / "photos").string(), "--name", "pets", "--json"}),
            kExitOk)
      << err_.str();
  const nlohmann::json record = nlohmann::json::parse(out_.str());
  EXPECT_EQ(record["name"], "pets");
  EXPECT_EQ(record["origin"], "uploaded");
  const std::string digest = record["digest"];
  {
    auto state = server_.Lock();
    ASSERT_TRUE(state->blobs.contains(digest));
    EXPECT_EQ(state->upload_kinds, std::vector<std::string>{"dataset"});
  }
  EXPECT_THAT(err_.str(), HasSubstr("uploaded " + (dir_ / "photos").string()));
  // The packed .tar was temporary.
  for (const auto& entry : fs::directory_iterator(fs::temp_directory_path())) {
    EXPECT_FALSE(entry.path().filename().string().starts_with("qnet-dataset-" +
                                                              std::to_string(getpid()) + "-"))
        << entry.path();
  }

  // The same folder again: the same digest, nothing sent.
  out_.str("");
  err_.str("");
  EXPECT_EQ(Cli({"datasets", "upload", (dir_ / "photos").string(), "--name", "pets"}), kExitOk);
  EXPECT_THAT(err_.str(), HasSubstr("already on the server"));
  EXPECT_THAT(out_.str(), HasSubstr("classes: cat, dog"));
  EXPECT_EQ(server_.Lock()->upload_calls, 1);

  out_.str("");
  EXPECT_EQ(Cli({"datasets", "--json"}), kExitOk);
  EXPECT_EQ(nlohmann::json::parse(out_.str())["datasets"][1]["digest"], digest);
  // Refused by the server, or nothing there to upload: fix the input (exit 2).
  EXPECT_EQ(Cli({"datasets", "upload", (dir_ / "photos").string(), "--name", "fashion-mnist"}),
            kExitUsage);
  EXPECT_EQ(Cli({"datasets", "upload", (dir_ / "nope").string(), "--name", "x"}), kExitUsage);
  EXPECT_THAT(err_.str(), HasSubstr("is neither a folder nor a file"));
  EXPECT_EQ(Cli({"datasets", "upload", (dir_ / "photos").string()}), kExitUsage);  // no --name
}

}  // namespace
}  // namespace qnet::cli
