// OpenJobStore: opens the job store a URI names, "SCHEME://LOCATION", with the factory registered
// for SCHEME; qnetd's --store flag goes through it.
//
//   absl::StatusOr<std::unique_ptr<JobStore>> store =
//       OpenJobStore("sqlite:///var/lib/qnet/jobs.db");
//   DefaultJobStoreUri("/var/lib/qnet");  // "sqlite:///var/lib/qnet/jobs.db"
//
// Adding a store: its own .cc file in server/store/ with a factory (location -> JobStore) and one
// registration line there (common/registry.h), nothing else to edit:
//   QNET_REGISTER(JobStoreScheme, "sqlite", JobStoreScheme{"sqlite:///var/lib/qnet/jobs.db",
//                                                          &SqliteJobStore::OpenUri});
// The store library is linked whole (server/store/CMakeLists.txt), so no registration is dropped.
// Every store must pass tests/server/store/job_store_conformance.h.
#ifndef QNET_SERVER_STORE_JOB_STORE_REGISTRY_H_
#define QNET_SERVER_STORE_JOB_STORE_REGISTRY_H_

#include <functional>
#include <map>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "server/store/job_store.h"

namespace qnet::server {

// Opens `location` (the URI without "SCHEME://"); INVALID_ARGUMENT for a location it cannot use.
using JobStoreFactory = absl::StatusOr<std::unique_ptr<JobStore>> (*)(absl::string_view location);

// Registered under the scheme, in lower case (e.g. "sqlite").
struct JobStoreScheme {
  const char* example;  // a URI of that scheme, for help texts and errors
  JobStoreFactory open;
};

// INVALID_ARGUMENT naming the known schemes when `uri` is not SCHEME://LOCATION or SCHEME is
// unknown; otherwise what the scheme's factory returns.
absl::StatusOr<std::unique_ptr<JobStore>> OpenJobStore(absl::string_view uri);

// Every registered scheme by name, sorted.
const std::map<std::string, JobStoreScheme, std::less<>>& JobStoreSchemes();
// "sqlite (sqlite:///var/lib/qnet/jobs.db)", for messages and help texts.
std::string KnownSchemes();

// The store qnetd uses without --store: DATA_DIR/jobs.db in SQLite (DATA_DIR made absolute).
std::string DefaultJobStoreUri(const std::string& data_dir);

}  // namespace qnet::server

#endif  // QNET_SERVER_STORE_JOB_STORE_REGISTRY_H_
