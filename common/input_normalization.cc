#include "common/input_normalization.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace qnet {

absl::Status CheckInputNormalization(const std::vector<double>& mean,
                                     const std::vector<double>& std) {
  if (mean.empty() && std.empty()) return absl::OkStatus();
  if (mean.size() != std.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("input normalization needs one mean and one std per channel; got ",
                     mean.size(), " mean(s) and ", std.size(), " std(s)"));
  }
  if (mean.size() > kMaxInputChannels) {
    return absl::InvalidArgumentError(absl::StrCat("input normalization has ", mean.size(),
                                                   " channels; at most ", kMaxInputChannels));
  }
  for (size_t c = 0; c < mean.size(); ++c) {
    if (!std::isfinite(mean[c])) {
      return absl::InvalidArgumentError(
          absl::StrCat("input mean of channel ", c, " must be finite, got ", mean[c]));
    }
    if (!std::isfinite(std[c]) || !(std[c] > 0)) {
      return absl::InvalidArgumentError(
          absl::StrCat("input std of channel ", c, " must be finite and > 0, got ", std[c]));
    }
  }
  return absl::OkStatus();
}

std::string FormatInputNormalization(const std::vector<double>& mean,
                                     const std::vector<double>& std) {
  if (mean.empty() || std.empty()) return "";
  const auto list = [](const std::vector<double>& v) {
    return absl::StrJoin(v, ",", [](std::string* out, double x) {
      absl::StrAppend(out, absl::StrFormat("%.4g", x));
    });
  };
  return absl::StrCat("inputs: (pixel/255 - mean) / std, mean ", list(mean), " std ", list(std));
}

}  // namespace qnet
