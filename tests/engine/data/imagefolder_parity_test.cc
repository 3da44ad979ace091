// A model trained in plain PyTorch on a PNG image folder (torchvision.datasets.ImageFolder, the
// evaluation transforms Resize + CenterCrop + Normalize) scores the same float top-1 in the
// engine, given the same input shape, resize size and normalisation: the engine reads, resizes,
// crops, repeats grey images and normalises as torchvision does (imagefolder_parity.py).
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include <gtest/gtest.h>
#include <unistd.h>

#include "workers/engine/job_runner.h"

namespace qnet::engine {
namespace {

TEST(ImageFolderParityTest, FloatAccuracyMatchesPyTorch) {
  const std::string base = ::testing::TempDir() + "/parity-" + std::to_string(getpid());
  std::filesystem::remove_all(base);
  const std::string command = std::string(QNET_TEST_PYTHON) + " " + QNET_PARITY_PY + " " + base +
                              "/data " + base + "/ref 2>/dev/null";
  ASSERT_EQ(std::system(command.c_str()), 0) << command;
  int64_t correct = 0, total = 0;
  std::ifstream(base + "/ref/accuracy.txt") >> correct >> total;
  ASSERT_EQ(total, 80);

  JobRun run;
  run.spec.set_model(base + "/ref/model.pt");
  run.spec.set_dataset("parity");
  run.spec.set_input_shape("3x24x24");
  run.spec.mutable_preprocessing()->set_resize_size(28);
  for (double m : {0.5, 0.4, 0.3}) run.spec.mutable_input_normalization()->add_mean(m);
  for (double s : {0.25, 0.3, 0.2}) run.spec.mutable_input_normalization()->add_std(s);
  run.spec.mutable_training()->set_epochs(0);  // evaluate the float model only
  run.spec.add_export_formats("metrics");
  run.context.dataset_dir = base + "/data";  // format detected
  run.context.device = "cpu";
  run.context.out_dir = base + "/out";
  absl::StatusOr<JobResult> result = RunJob(run, {});
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->metrics.class_names, (std::vector<std::string>{"apple", "bird", "cat", "dog"}));
  const double reference = static_cast<double>(correct) / static_cast<double>(total);
  EXPECT_NEAR(result->metrics.float_top1, reference, 1.0 / static_cast<double>(total) + 1e-9)
      << "PyTorch " << correct << "/" << total;
  std::filesystem::remove_all(base);
}

}  // namespace
}  // namespace qnet::engine
