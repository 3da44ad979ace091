// The JSON the `qnet` CLI prints with --json: protobuf's JSON mapping with the .proto field names
// (`quantized_top1`, not `quantizedTop1`), every scalar printed even when zero, enums by name
// ("SUCCEEDED"). A job always carries `progress` and `metrics` objects so scripts can read
// `progress.epoch` or `metrics.quantized_top1` before the worker has reported anything.
//
//   std::cout << qnet::cli::JobToJson(job) << "\n";                    // {"id": "...", ...}
//   std::cout << qnet::cli::JobsToJson(jobs) << "\n";                  // {"jobs": [...]}
#ifndef QNET_CLIENT_CLI_JOB_JSON_H_
#define QNET_CLIENT_CLI_JOB_JSON_H_

#include <string>
#include <vector>

#include "google/protobuf/message.h"
#include "qnet/v1/job.pb.h"

namespace qnet::cli {

// Any API message, indented.
std::string MessageToJson(const google::protobuf::Message& message);
std::string JobToJson(const v1::Job& job);
std::string JobsToJson(const std::vector<v1::Job>& jobs);

}  // namespace qnet::cli

#endif  // QNET_CLIENT_CLI_JOB_JSON_H_
