// Fuzz target: the archive reader as the "archive" format drives it: libarchive over a tar,
// tar.gz or zip in memory with the entry guards (paths, links, sizes, expansion), each entry's
// image header, then the train/<class> arrangement of the listing.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <span>
#include <vector>

#include "absl/strings/str_split.h"
#include "datasets/container_file.h"
#include "datasets/image_tree.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace qnet::datasets;
  const std::span<const uint8_t> bytes(data, size);
  SniffContainer(bytes);
  // Entries of at most 1 MiB keep one run fast; the guards are the same at any limit.
  absl::StatusOr<ContainerReader> reader = ContainerReader::OpenMemory(bytes, "input", 1 << 20);
  if (!reader.ok()) return 0;
  std::vector<ListedFile> files;
  while (true) {
    absl::StatusOr<std::optional<ContainerEntry>> entry = reader->Next();
    if (!entry.ok() || !entry->has_value()) break;
    const ContainerEntry& e = **entry;
    // The guards let through only relative paths that stay inside the archive.
    for (absl::string_view part : absl::StrSplit(e.path, '/')) {
      if (part.empty() || part == "." || part == "..") std::abort();
    }
    ListedFile file{e.path, e.directory};
    if (!e.directory) {
      std::vector<uint8_t> content;
      auto read_rest = [&] { return reader->ReadData(content, 1 << 20); };
      if (!reader->ReadData(content, kHeaderPrefixBytes).ok()) break;
      if (!ReadListedHeader(e.path, content, reader->entry_done(), read_rest, file.header).ok()) {
        break;
      }
    }
    files.push_back(std::move(file));
  }
  absl::StatusOr<ImageTree> tree = ArrangeImageTree("input", files);
  if (tree.ok() && tree->class_names.empty()) std::abort();  // a tree always has classes
  return 0;
}
