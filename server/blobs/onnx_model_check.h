// A cheap structural check that a file is an ONNX model, without parsing it: the top-level
// protobuf fields of a ModelProto, walked by their tags and lengths (seeking over the graph, so
// the cost does not grow with the weights), must end exactly at the end of the file and include
// ir_version and a non-empty graph. Every length is bounds-checked against the file size and the
// walk stops after a bounded number of fields, so garbage input only yields INVALID_ARGUMENT.
// The worker parses the model fully; this only keeps qnetd from queueing jobs on files that are
// not models at all.
//
//   absl::Status s = CheckOnnxModel(blob_store.PathOf(digest));
#ifndef QNET_SERVER_BLOBS_ONNX_MODEL_CHECK_H_
#define QNET_SERVER_BLOBS_ONNX_MODEL_CHECK_H_

#include <string>

#include "absl/status/status.h"

namespace qnet::server {

absl::Status CheckOnnxModel(const std::string& path);

}  // namespace qnet::server

#endif  // QNET_SERVER_BLOBS_ONNX_MODEL_CHECK_H_
