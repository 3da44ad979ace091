// Reading what the ONNX fixture scripts write (make_onnx_models.py, make_onnx_io_models.py):
// float32 tensors saved with numpy's tofile, and models imported as the worker imports them.
//
//   ImportedModel m = ImportOnnxFixture(dir + "/resnet18.onnx");
//   torch::Tensor want = ReadFloats(dir + "/resnet18.expected.bin", {2, 10});
#ifndef QNET_TESTS_ENGINE_ONNX_IMPORT_ONNX_FIXTURE_FILES_H_
#define QNET_TESTS_ENGINE_ONNX_IMPORT_ONNX_FIXTURE_FILES_H_

#include <fstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <torch/script.h>

#include "workers/engine/model_source/onnx/importer.h"
#include "workers/engine/model_source/onnx/onnx_file.h"

namespace qnet::testing {

// A raw float32 file written by numpy's tofile, as a tensor of `shape`.
inline torch::Tensor ReadFloats(const std::string& path, const std::vector<int64_t>& shape) {
  std::ifstream in(path, std::ios::binary);
  torch::Tensor t = torch::empty(shape);
  in.read(static_cast<char*>(t.data_ptr()), static_cast<std::streamsize>(t.nbytes()));
  EXPECT_TRUE(in.good()) << path;
  return t;
}

// The ONNX file at `path` read and imported; a failure is a test failure and an empty model.
inline engine::onnx_import::ImportedModel ImportOnnxFixture(const std::string& path) {
  absl::StatusOr<engine::onnx_import::OnnxFile> file = engine::onnx_import::ReadOnnxFile(path);
  EXPECT_TRUE(file.ok()) << file.status();
  if (!file.ok()) return {};
  absl::StatusOr<engine::onnx_import::ImportedModel> model = engine::onnx_import::ImportOnnx(*file);
  EXPECT_TRUE(model.ok()) << model.status();
  return model.ok() ? *model : engine::onnx_import::ImportedModel{};
}

}  // namespace qnet::testing

#endif  // QNET_TESTS_ENGINE_ONNX_IMPORT_ONNX_FIXTURE_FILES_H_
