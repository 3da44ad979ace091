// Turns an exception thrown by LibTorch into the text a person should read: c10::Error's message
// without the C++ backtrace LibTorch appends to what(), one line. An error raised inside a
// TorchScript method is reported by the interpreter as a traceback of the model's code whose last
// line holds the original error ("RuntimeError: Given groups=1, weight of size ..."): that line,
// without its exception type.
//
//   try { module.save(path); } catch (const std::exception& e) {
//     return absl::InternalError(absl::StrCat("saving ", path, ": ", TorchErrorText(e)));
//   }
#ifndef QNET_WORKERS_ENGINE_TORCH_ERROR_H_
#define QNET_WORKERS_ENGINE_TORCH_ERROR_H_

#include <exception>
#include <string>
#include <string_view>

#include <c10/util/Exception.h>

namespace qnet::engine {

inline std::string TorchErrorText(const std::exception& e) {
  const auto* c10_error = dynamic_cast<const c10::Error*>(&e);
  const std::string text = c10_error != nullptr ? c10_error->what_without_backtrace() : e.what();
  const std::string_view first_line = std::string_view(text).substr(0, text.find('\n'));
  if (!first_line.starts_with("The following operation failed in the TorchScript interpreter")) {
    return std::string(first_line);
  }
  // The traceback's lines are indented; the error's own line ("NameError: ...") is not.
  size_t end = text.size();
  while (end > 0) {
    const size_t start = text.rfind('\n', end - 1);
    const size_t begin = start == std::string::npos ? 0 : start + 1;
    const std::string_view line = std::string_view(text).substr(begin, end - begin);
    const size_t colon = line.find(": ");
    if (!line.empty() && line[0] != ' ' && colon != std::string_view::npos &&
        line.substr(0, colon).find(' ') == std::string_view::npos &&
        (line.substr(0, colon).ends_with("Error") ||
         line.substr(0, colon).ends_with("Exception"))) {
      return std::string(line.substr(colon + 2));
    }
    if (start == std::string::npos) break;
    end = start;
  }
  return std::string(first_line);
}

}  // namespace qnet::engine

#endif  // QNET_WORKERS_ENGINE_TORCH_ERROR_H_
