// The ONNX artifact scored in ONNX Runtime, the runtime users deploy it with: the parity table's
// onnx_top1 is what model.onnx itself computes, not what the engine expects it to.
//
//   absl::StatusOr<double> top1 = OnnxRuntimeTop1(out_dir + "/model.onnx", data.test, 256);
//
// ONNX Runtime is loaded at run time (dlopen) from the library of the onnxruntime wheel the build
// found (QNET_ONNXRUNTIME_LIBRARY), through its versioned C API; a worker without it still runs
// every job and reports no ONNX figure (OnnxRuntimeAvailable says why).
#ifndef QNET_WORKERS_ENGINE_EXPORT_ONNX_RUNTIME_H_
#define QNET_WORKERS_ENGINE_EXPORT_ONNX_RUNTIME_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "workers/engine/data/data.h"

namespace qnet::engine {

// OK when ONNX Runtime is loaded (once per process); FAILED_PRECONDITION naming the library and
// the loader's reason otherwise.
absl::Status OnnxRuntimeAvailable();

// Top-1 (a fraction) of the ONNX model at `path` on `test` (images as the engine feeds them: the
// artifact takes the normalised tensor), run by ONNX Runtime's CPU provider in batches of
// `batch_size`. The error of OnnxRuntimeAvailable when it is not; INTERNAL with ONNX Runtime's
// message when the session does not load or run.
absl::StatusOr<double> OnnxRuntimeTop1(const std::string& path, const TensorDataset& test,
                                       int64_t batch_size);

}  // namespace qnet::engine

#endif  // QNET_WORKERS_ENGINE_EXPORT_ONNX_RUNTIME_H_
