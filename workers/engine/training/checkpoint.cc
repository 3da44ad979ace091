#include "workers/engine/training/checkpoint.h"
#include "workers/engine/torch_error.h"

#include <algorithm>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <utility>
#include <vector>

#include <torch/serialize.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/atomic_file.h"

namespace qnet::engine {
namespace {

constexpr char kFormat[] = "qnet-checkpoint-1";

}  // namespace

std::string CheckpointPath(const std::string& dir, int epoch) {
  return (std::filesystem::path(dir) / absl::StrCat("ckpt-", epoch, ".pt")).string();
}

absl::Status SaveCheckpoint(const std::string& path, const Checkpoint& checkpoint) {
  std::vector<char> bytes;
  try {
    c10::Dict<std::string, torch::Tensor> tensors;
    for (const auto& [name, t] : checkpoint.tensors) tensors.insert(name, t.detach().cpu());
    c10::impl::GenericDict root(c10::StringType::get(), c10::AnyType::get());
    root.insert("format", std::string(kFormat));
    root.insert("meta", checkpoint.meta);
    root.insert("tensors", tensors);
    bytes = torch::pickle_save(root);
  } catch (const std::exception& e) {
    return absl::InternalError(
        absl::StrCat("serialising checkpoint ", path, ": ", TorchErrorText(e)));
  }
  return WriteFileAtomically(path, std::string_view(bytes.data(), bytes.size()));
}

absl::StatusOr<Checkpoint> LoadCheckpoint(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open checkpoint ", path));
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  Checkpoint c;
  try {
    const c10::IValue v = torch::pickle_load(bytes);
    if (!v.isGenericDict()) throw std::runtime_error("not a dict");
    const c10::impl::GenericDict root = v.toGenericDict();
    if (!root.contains("format") || root.at("format").toStringRef() != kFormat) {
      throw std::runtime_error("unknown format");
    }
    c.meta = root.at("meta").toStringRef();
    for (const auto& entry : root.at("tensors").toGenericDict()) {
      c.tensors[entry.key().toStringRef()] = entry.value().toTensor();
    }
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(
        "checkpoint ", path, " is damaged or not a qnet checkpoint: ", TorchErrorText(e)));
  }
  return c;
}

std::optional<LoadedCheckpoint> LoadLatestCheckpoint(const std::string& dir) {
  if (dir.empty()) return std::nullopt;
  std::error_code ec;
  std::vector<std::pair<int, std::string>> found;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (name.size() < 9 || name.rfind("ckpt-", 0) != 0 || !name.ends_with(".pt")) continue;
    int epoch = 0;
    if (!absl::SimpleAtoi(name.substr(5, name.size() - 8), &epoch) || epoch < 0) continue;
    found.emplace_back(epoch, entry.path().string());
  }
  std::sort(found.rbegin(), found.rend());
  for (const auto& [epoch, path] : found) {
    absl::StatusOr<Checkpoint> c = LoadCheckpoint(path);
    if (c.ok()) return LoadedCheckpoint{path, epoch, *std::move(c)};
  }
  return std::nullopt;
}

}  // namespace qnet::engine
