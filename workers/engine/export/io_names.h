// The names an exported graph gives its input and its output. A model that arrives with names of
// its own (an imported ONNX graph's) keeps them, so code written against the original model feeds
// its quantized artifact unchanged; any other model gets "input" and "output".
#ifndef QNET_WORKERS_ENGINE_EXPORT_IO_NAMES_H_
#define QNET_WORKERS_ENGINE_EXPORT_IO_NAMES_H_

#include <string>

namespace qnet::engine {

struct IoNames {
  std::string input = "input";
  std::string output = "output";
};

}  // namespace qnet::engine

#endif  // QNET_WORKERS_ENGINE_EXPORT_IO_NAMES_H_
