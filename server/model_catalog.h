// The built-in model zoo the server offers (ListModels) and accepts in JobSpec.model. The worker
// defines these networks in TorchScript; the server only knows their names and input shapes.
//
//   if (const qnet::v1::Model* m = FindZooModel("zoo:lenet5")) { ... m->input_shape() ... }
//   for (const qnet::v1::Model& m : ZooModels()) { ... }
#ifndef QNET_SERVER_MODEL_CATALOG_H_
#define QNET_SERVER_MODEL_CATALOG_H_

#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "qnet/v1/job.pb.h"

namespace qnet::server {

const std::vector<qnet::v1::Model>& ZooModels();
// nullptr when `name` is not a zoo model.
const qnet::v1::Model* FindZooModel(absl::string_view name);
// "zoo:lenet5, zoo:resnet20"
std::string ZooModelNames();

}  // namespace qnet::server

#endif  // QNET_SERVER_MODEL_CATALOG_H_
