#include "workers/engine/model_source/model_source.h"

#include "absl/strings/str_cat.h"

namespace qnet::engine {

absl::StatusOr<std::unique_ptr<OpenedModel>> OpenModel(const std::string& model) {
  for (const auto& [name, source] : Registry<ModelSource>::Global().entries()) {
    if (source.claims(model)) return source.open(model);
  }
  return absl::InvalidArgumentError(absl::StrCat("model ", model, ": no model source reads it (",
                                                 Registry<ModelSource>::Global().NameList(), ")"));
}

}  // namespace qnet::engine
