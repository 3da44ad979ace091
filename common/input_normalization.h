// The input preprocessing a job trains and evaluates with, and that its artifacts expect:
// pixels scaled to [0, 1], then x' = (x - mean[c]) / std[c] per channel. A job may name the
// values its model was trained with; unset, the engine uses the training split's statistics.
// qnetd (before it queues a job) and the engine (before it runs one) check them with the same
// function, so a job the server accepts cannot fail on a worker for a malformed normalization.
//
//   absl::Status s = qnet::CheckInputNormalization({0.5}, {0.5});  // OK
//   s = qnet::CheckInputNormalization({0.5}, {});                  // INVALID_ARGUMENT
#ifndef QNET_COMMON_INPUT_NORMALIZATION_H_
#define QNET_COMMON_INPUT_NORMALIZATION_H_

#include <cstddef>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace qnet {

// More channels than any image dataset the service reads (IDX: 1, CIFAR-10: 3).
inline constexpr size_t kMaxInputChannels = 16;

// OK when both lists are empty (the dataset's statistics), or when they have the same length,
// 1 to kMaxInputChannels, every mean is finite and every std finite and positive. Otherwise
// INVALID_ARGUMENT saying which value is wrong. Whether the length matches the dataset's channel
// count is checked where the images are loaded.
absl::Status CheckInputNormalization(const std::vector<double>& mean,
                                     const std::vector<double>& std);

// One line for reports: "inputs: (pixel/255 - mean) / std, mean 0.286 std 0.353" (values
// comma-separated per channel); empty when nothing is known.
std::string FormatInputNormalization(const std::vector<double>& mean,
                                     const std::vector<double>& std);

}  // namespace qnet

#endif  // QNET_COMMON_INPUT_NORMALIZATION_H_
