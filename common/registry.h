// Registry<T>: a process-wide table of named entries of one kind (export writers, zoo model
// builders, model sources, ...). Each entry registers itself from the file that defines it, so
// adding one is one file and one registration line; nothing else lists the names. Lookups are by
// exact name; Names() is sorted, so messages and capability lists are stable.
//
//   struct ExportWriter { std::function<absl::Status(const ExportInput&)> write; };
//   QNET_REGISTER(ExportWriter, "packed", ExportWriter{&WritePacked});   // in packed_writer.cc
//   if (const ExportWriter* w = qnet::Registry<ExportWriter>::Global().Find("packed")) ...
//
// Registration runs during static initialisation. A static library drops object files nothing
// references, registrars included, so a library holding registrations is linked whole
// (`$<LINK_LIBRARY:WHOLE_ARCHIVE,...>`, see workers/engine/CMakeLists.txt).
#ifndef QNET_COMMON_REGISTRY_H_
#define QNET_COMMON_REGISTRY_H_

#include <cstdio>
#include <cstdlib>
#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"

namespace qnet {

template <typename T>
class Registry {
 public:
  // The one table for T. Never destroyed, so registrars and lookups during static
  // initialisation or exit are safe.
  static Registry& Global() {
    static Registry* const registry = new Registry;
    return *registry;
  }

  // Registers `value` under `name`. Two entries with one name are a programming error caught at
  // start-up: the process aborts naming the name rather than running with either silently.
  bool Add(std::string name, T value) {
    auto [it, inserted] = entries_.try_emplace(std::move(name), std::move(value));
    if (!inserted) {
      std::fprintf(stderr, "qnet: \"%s\" is registered twice\n", it->first.c_str());
      std::abort();
    }
    return true;
  }

  // nullptr when nothing is registered under `name`. Entries never move once registered.
  const T* Find(absl::string_view name) const {
    auto it = entries_.find(name);
    return it == entries_.end() ? nullptr : &it->second;
  }

  // Sorted names.
  std::vector<std::string> Names() const {
    std::vector<std::string> names;
    for (const auto& [name, value] : entries_) names.push_back(name);
    return names;
  }
  // "a, b, c", for messages that list what is known.
  std::string NameList() const { return absl::StrJoin(Names(), ", "); }

  const std::map<std::string, T, std::less<>>& entries() const { return entries_; }

 private:
  Registry() = default;
  std::map<std::string, T, std::less<>> entries_;
};

}  // namespace qnet

#define QNET_REGISTRY_CONCAT_INNER(a, b) a##b
#define QNET_REGISTRY_CONCAT(a, b) QNET_REGISTRY_CONCAT_INNER(a, b)
// Registers an entry of type T under `name` at static initialisation. Use at namespace scope.
#define QNET_REGISTER(T, name, ...)                                                     \
  [[maybe_unused]] static const bool QNET_REGISTRY_CONCAT(qnet_registered_, __LINE__) = \
      ::qnet::Registry<T>::Global().Add(name, __VA_ARGS__)

#endif  // QNET_COMMON_REGISTRY_H_
