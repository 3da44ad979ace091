#include "client/cli/job_json.h"

#include "google/protobuf/util/json_util.h"
#include "nlohmann/json.hpp"

namespace qnet::cli {
namespace {

std::string Print(const google::protobuf::Message& message) {
  google::protobuf::util::JsonPrintOptions options;
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

// Re-indented by nlohmann (two spaces, like `qnet list --json`), keeping the proto field order.
std::string MessageToJson(const google::protobuf::Message& message) {
  nlohmann::ordered_json doc =
      nlohmann::ordered_json::parse(Print(message), nullptr, /*allow_exceptions=*/false);
  return doc.is_discarded() ? "{}"
                            : doc.dump(2, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string JobToJson(const v1::Job& job) { return MessageToJson(WithSubmessages(job)); }

std::string JobsToJson(const std::vector<v1::Job>& jobs) {
  nlohmann::ordered_json doc = {{"jobs", nlohmann::ordered_json::array()}};
  for (const v1::Job& job : jobs) {
    // No-throw parse: protobuf prints valid JSON; a job that did not would only be left out.
    auto item = nlohmann::ordered_json::parse(Print(WithSubmessages(job)), nullptr,
                                              /*allow_exceptions=*/false);
    if (!item.is_discarded()) doc["jobs"].push_back(std::move(item));
  }
  return doc.dump(2, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace qnet::cli
