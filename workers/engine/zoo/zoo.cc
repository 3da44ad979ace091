#include "workers/engine/zoo/zoo.h"

#include <exception>
#include <new>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "workers/engine/zoo/zoo_builder.h"

namespace qnet::engine {

std::vector<std::string> ZooModelNames() { return Registry<ZooModel>::Global().Names(); }

absl::StatusOr<torch::jit::Module> MakeZooModel(const std::string& name, int64_t in_channels,
                                                int64_t num_classes, uint64_t seed,
                                                int64_t input_size) {
  constexpr int64_t kMaxWidth = 65536;
  if (in_channels < 1 || in_channels > kMaxWidth || num_classes < 1 || num_classes > kMaxWidth) {
    return absl::InvalidArgumentError(absl::StrCat("in_channels (", in_channels,
                                                   ") and num_classes (", num_classes,
                                                   ") must be in [1, ", kMaxWidth, "]"));
  }
  if (input_size < 0) {
    return absl::InvalidArgumentError(absl::StrCat("input_size must be >= 0, got ", input_size));
  }
  const ZooModel* model = Registry<ZooModel>::Global().Find(name);
  if (model == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        "unknown zoo model '", name, "' (known: ", Registry<ZooModel>::Global().NameList(), ")"));
  }
  try {
    ZooBuilder builder(seed);
    return model->build(builder, {in_channels, num_classes, input_size});
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError(absl::StrCat("out of memory building zoo model ", name));
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("building zoo model ", name, " failed: ", e.what()));
  }
}

}  // namespace qnet::engine
