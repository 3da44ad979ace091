// Turns an exception thrown by LibTorch into the text a person should read: c10::Error's message
// without the C++ backtrace LibTorch appends to what(), limited to its first line.
//
//   try { module.save(path); } catch (const std::exception& e) {
//     return absl::InternalError(absl::StrCat("saving ", path, ": ", TorchErrorText(e)));
//   }
#ifndef QNET_WORKERS_ENGINE_TORCH_ERROR_H_
#define QNET_WORKERS_ENGINE_TORCH_ERROR_H_

#include <exception>
#include <string>

#include <c10/util/Exception.h>

namespace qnet::engine {

inline std::string TorchErrorText(const std::exception& e) {
  const auto* c10_error = dynamic_cast<const c10::Error*>(&e);
  std::string text = c10_error != nullptr ? c10_error->what_without_backtrace() : e.what();
  return text.substr(0, text.find('\n'));
}

}  // namespace qnet::engine

#endif  // QNET_WORKERS_ENGINE_TORCH_ERROR_H_
