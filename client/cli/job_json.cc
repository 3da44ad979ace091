#include "client/cli/job_json.h"

#include "google/protobuf/util/json_util.h"
#include "nlohmann/json.hpp"

namespace qnet::cli {
namespace {

std::string Print(const google::protobuf::Message& message, bool indent) {
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = indent;
  options.always_print_primitive_fields = true;
  options.preserve_proto_field_names = true;
  std::string out;
  // Printing a well-formed message cannot fail; an empty object beats a crash if it ever did.
  if (!google::protobuf::util::MessageToJsonString(message, &out, options).ok()) return "{}";
  return out;
}

v1::Job WithSubmessages(const v1::Job& job) {
  v1::Job copy = job;
  copy.mutable_progress();
  copy.mutable_metrics();
  return copy;
}

}  // namespace

std::string MessageToJson(const google::protobuf::Message& message) {
  std::string out = Print(message, true);
  while (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

std::string JobToJson(const v1::Job& job) { return MessageToJson(WithSubmessages(job)); }

std::string JobsToJson(const std::vector<v1::Job>& jobs) {
  nlohmann::json doc = {{"jobs", nlohmann::json::array()}};
  for (const v1::Job& job : jobs) {
    // No-throw parse: protobuf printed valid JSON, and a discarded value would only drop one job.
    doc["jobs"].push_back(nlohmann::json::parse(Print(WithSubmessages(job), false), nullptr,
                                                /*allow_exceptions=*/false));
  }
  return doc.dump(2);
}

}  // namespace qnet::cli
