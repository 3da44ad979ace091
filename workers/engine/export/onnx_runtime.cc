#include "workers/engine/export/onnx_runtime.h"

#include <dlfcn.h>

#include <array>
#include <exception>
#include <vector>

// The C++ API over the C API's function table, which OnnxRuntimeAvailable hands it once loaded.
#define ORT_API_MANUAL_INIT
#include <onnxruntime_cxx_api.h>
#undef ORT_API_MANUAL_INIT

#include <ATen/Parallel.h>

#include "absl/strings/str_cat.h"
#include "workers/engine/torch_error.h"
#include "workers/engine/training/evaluation.h"

namespace qnet::engine {
namespace {

absl::Status LoadOnnxRuntime() {
  const char* path = QNET_ONNXRUNTIME_LIBRARY;
  if (*path == '\0') {
    return absl::FailedPreconditionError(
        "this worker was built without ONNX Runtime (no onnxruntime wheel for its Python)");
  }
  void* library = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (library == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot load ONNX Runtime from ", path, ": ", dlerror()));
  }
  using GetApiBase = const OrtApiBase* (*)();
  auto get_api_base = reinterpret_cast<GetApiBase>(dlsym(library, "OrtGetApiBase"));
  const OrtApiBase* base = get_api_base == nullptr ? nullptr : get_api_base();
  if (base == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat(path, " has no OrtGetApiBase"));
  }
  const OrtApi* api = base->GetApi(ORT_API_VERSION);
  if (api == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat("ONNX Runtime ", base->GetVersionString(),
                                                      " (", path, ") does not serve API version ",
                                                      ORT_API_VERSION));
  }
  Ort::InitApi(api);
  return absl::OkStatus();
}

}  // namespace

absl::Status OnnxRuntimeAvailable() {
  static const absl::Status* loaded = new absl::Status(LoadOnnxRuntime());
  return *loaded;
}

absl::StatusOr<double> OnnxRuntimeTop1(const std::string& path, const TensorDataset& test,
                                       int64_t batch_size) {
  if (absl::Status s = OnnxRuntimeAvailable(); !s.ok()) return s;
  try {
    Ort::Env env(ORT_LOGGING_LEVEL_ERROR, "qnet");
    Ort::SessionOptions options;
    options.SetIntraOpNumThreads(at::get_num_threads());
    options.SetInterOpNumThreads(1);
    Ort::Session session(env, path.c_str(), options);
    Ort::AllocatorWithDefaultOptions allocator;
    const Ort::AllocatedStringPtr input_name = session.GetInputNameAllocated(0, allocator);
    const Ort::AllocatedStringPtr output_name = session.GetOutputNameAllocated(0, allocator);
    const std::array<const char*, 1> inputs{input_name.get()}, outputs{output_name.get()};
    const Ort::MemoryInfo cpu = Ort::MemoryInfo::CreateCpu(OrtArenaAllocator, OrtMemTypeDefault);
    const ForwardFn forward = [&](const torch::Tensor& batch) {
      torch::Tensor x = batch.to(torch::kFloat32).contiguous();  // Evaluate runs on the CPU
      const std::vector<int64_t> shape(x.sizes().begin(), x.sizes().end());
      Ort::Value in = Ort::Value::CreateTensor<float>(
          cpu, x.data_ptr<float>(), static_cast<size_t>(x.numel()), shape.data(), shape.size());
      std::vector<Ort::Value> out =
          session.Run(Ort::RunOptions{nullptr}, inputs.data(), &in, 1, outputs.data(), 1);
      const std::vector<int64_t> out_shape = out[0].GetTensorTypeAndShapeInfo().GetShape();
      // A copy: the logits outlive the Ort::Value that owns ONNX Runtime's buffer.
      return torch::from_blob(out[0].GetTensorMutableData<float>(), out_shape, torch::kFloat32)
          .clone();
    };
    return Evaluate(forward, test, batch_size, torch::kCPU).top1;
  } catch (const Ort::Exception& e) {
    return absl::InternalError(
        absl::StrCat("ONNX Runtime on the ONNX artifact ", path, ": ", e.what()));
  } catch (const std::exception& e) {
    return absl::InternalError(
        absl::StrCat("evaluating the ONNX artifact ", path, ": ", TorchErrorText(e)));
  }
}

}  // namespace qnet::engine
