#include "datasets/image_tree.h"

#include <algorithm>
#include <map>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "datasets/gz_reader.h"
#include "datasets/image_decoder.h"

namespace qnet::datasets {
namespace {

constexpr char kTrain[] = "train";

std::vector<std::string> Components(const std::string& path) {
  return absl::StrSplit(path, '/', absl::SkipEmpty());
}

bool HasFolder(const std::vector<ListedFile>& files, const std::string& folder) {
  const std::string inside = folder + "/";
  return std::any_of(files.begin(), files.end(), [&](const ListedFile& f) {
    return (f.directory && f.path == folder) || f.path.starts_with(inside);
  });
}

// "" when train/ is at the top, "X/" when every entry is under one folder X that holds train/.
absl::StatusOr<std::string> FindRoot(const std::string& where,
                                     const std::vector<ListedFile>& files) {
  if (HasFolder(files, kTrain)) return std::string();
  std::set<std::string> top;  // top-level folders; files beside them (a README) do not count
  for (const ListedFile& f : files) {
    const std::vector<std::string> parts = Components(f.path);
    if (f.directory || parts.size() > 1) top.insert(parts.front());
  }
  if (top.size() == 1 && HasFolder(files, absl::StrCat(*top.begin(), "/", kTrain))) {
    return absl::StrCat(*top.begin(), "/");
  }
  std::vector<std::string> shown(top.begin(), top.end());
  if (shown.size() > 10) shown.resize(10);
  return MalformedFile(where,
                       absl::StrCat("missing the train split: no train/ folder at the top "
                                    "or under one top-level folder (found: ",
                                    top.empty() ? "nothing" : absl::StrJoin(shown, ", "), ")"));
}

// The images of one split folder, grouped by class folder, and the class folders seen.
struct SplitListing {
  std::map<std::string, std::vector<size_t>> classes;  // class -> listed file indices
  bool present = false;
};

absl::StatusOr<SplitListing> ListSplit(const std::string& where, const std::string& folder,
                                       const std::vector<ListedFile>& files) {
  SplitListing split;
  const std::vector<std::string> prefix = Components(folder);
  for (size_t i = 0; i < files.size(); ++i) {
    const std::vector<std::string> parts = Components(files[i].path);
    if (parts.size() < prefix.size() || !std::equal(prefix.begin(), prefix.end(), parts.begin())) {
      continue;
    }
    split.present = true;
    if (parts.size() == prefix.size()) continue;  // the split folder itself
    if (parts.size() == prefix.size() + 1 && !files[i].directory) {
      return MalformedFile(absl::StrCat(where, "/", files[i].path),
                           absl::StrCat("not inside a class folder (", folder, "/<class>/...)"));
    }
    std::vector<size_t>& images = split.classes[parts[prefix.size()]];
    if (!files[i].directory) images.push_back(i);
  }
  for (const auto& [name, images] : split.classes) {
    if (images.empty()) {
      return MalformedFile(absl::StrCat(where, "/", folder, "/", name, "/"),
                           "empty class folder (no images)");
    }
  }
  if (split.present && split.classes.empty()) {
    return MalformedFile(absl::StrCat(where, "/", folder, "/"), "holds no class folders");
  }
  return split;
}

// TreeImages of a split in path order, or the first unreadable header.
absl::StatusOr<std::vector<TreeImage>> SplitImages(const SplitListing& split,
                                                   const std::map<std::string, int64_t>& labels,
                                                   const std::vector<ListedFile>& files) {
  std::vector<TreeImage> images;
  for (const auto& [name, indices] : split.classes) {
    for (size_t i : indices) {
      if (!files[i].header.ok()) return files[i].header.status();
      images.push_back({i, labels.at(name), *files[i].header});
    }
  }
  std::sort(images.begin(), images.end(), [&](const TreeImage& a, const TreeImage& b) {
    return files[a.file].path < files[b.file].path;
  });
  return images;
}

}  // namespace

bool IsSkippedPath(const std::string& path) {
  for (const std::string& part : Components(path)) {
    if (part.starts_with(".") || part == "__MACOSX") return true;
  }
  return false;
}

absl::Status ReadListedHeader(const std::string& name, std::vector<uint8_t>& bytes, bool complete,
                              const std::function<absl::Status()>& read_rest,
                              absl::StatusOr<ImageShape>& header) {
  absl::StatusOr<ImageHeader> parsed = ReadImageHeader(name, bytes);
  if (!parsed.ok() && !complete && LooksLikeImage(bytes)) {
    if (absl::Status s = read_rest(); !s.ok()) return s;
    parsed = ReadImageHeader(name, bytes);
  }
  if (parsed.ok()) {
    header = parsed->shape;
  } else {
    header = parsed.status();
  }
  return absl::OkStatus();
}

absl::StatusOr<ImageTree> ArrangeImageTree(const std::string& where,
                                           const std::vector<ListedFile>& all_files) {
  std::vector<ListedFile> kept;  // indices below refer to all_files through `origin`
  std::vector<size_t> origin;
  for (size_t i = 0; i < all_files.size(); ++i) {
    if (IsSkippedPath(all_files[i].path) || Components(all_files[i].path).empty()) continue;
    kept.push_back(all_files[i]);
    origin.push_back(i);
  }
  absl::StatusOr<std::string> root = FindRoot(where, kept);
  if (!root.ok()) return root.status();
  absl::StatusOr<SplitListing> train = ListSplit(where, *root + kTrain, kept);
  if (!train.ok()) return train.status();
  const bool has_test = HasFolder(kept, *root + "test"), has_val = HasFolder(kept, *root + "val");
  if (has_test && has_val) {
    return MalformedFile(absl::StrCat(where, "/", *root),
                         "has both test/ and val/; keep one as the test split");
  }
  const std::string test_folder = *root + (has_val ? "val" : "test");
  absl::StatusOr<SplitListing> test = ListSplit(where, test_folder, kept);
  if (!test.ok()) return test.status();

  ImageTree tree;
  std::map<std::string, int64_t> labels;
  for (const auto& [name, images] : train->classes) {
    labels[name] = static_cast<int64_t>(tree.class_names.size());
    tree.class_names.push_back(name);
  }
  for (const auto& [name, images] : test->classes) {
    if (!labels.contains(name)) {
      return MalformedFile(absl::StrCat(where, "/", test_folder, "/", name, "/"),
                           absl::StrCat("class not in ", *root, "train/ (classes: ",
                                        absl::StrJoin(tree.class_names, ", "), ")"));
    }
  }
  absl::StatusOr<std::vector<TreeImage>> train_images = SplitImages(*train, labels, kept);
  if (!train_images.ok()) return train_images.status();
  absl::StatusOr<std::vector<TreeImage>> test_images = SplitImages(*test, labels, kept);
  if (!test_images.ok()) return test_images.status();
  tree.train = *std::move(train_images);
  tree.test = *std::move(test_images);
  tree.has_test = test->present;

  // One colour image makes the dataset colour; count sizes for the typical shape.
  int64_t channels = 1;
  std::map<std::pair<int64_t, int64_t>, int64_t> sizes;
  for (auto* split : {&tree.train, &tree.test}) {
    for (TreeImage& image : *split) {
      image.file = origin[image.file];
      channels = std::max(channels, image.shape.channels);
      ++sizes[{image.shape.height, image.shape.width}];
    }
  }
  int64_t most = 0;
  for (const auto& [size, count] : sizes) {
    if (count > most) {
      most = count;
      tree.typical = {channels, size.first, size.second};
    }
  }
  tree.fixed_shape = sizes.size() == 1;
  for (auto* split : {&tree.train, &tree.test}) {
    for (TreeImage& image : *split) image.shape.channels = channels;
  }
  return tree;
}

DatasetSummary SummarizeImageTree(const ImageTree& tree, std::vector<std::string> files) {
  DatasetSummary summary;
  summary.shape = tree.typical;
  summary.class_names = tree.class_names;
  summary.num_classes = static_cast<int64_t>(tree.class_names.size());
  summary.train_images = static_cast<int64_t>(tree.train.size());
  summary.test_images = static_cast<int64_t>(tree.test.size());
  summary.files = std::move(files);
  return summary;
}

namespace {

// One split's images, decoded on demand from the store. Holds no mutable state, so concurrent
// Decode calls need no lock (each uses its own scratch buffer).
class ImageTreeSplit final : public SplitReader {
 public:
  struct Item {
    size_t file;
    std::string source;
    int64_t label;
    ImageShape shape;
  };

  ImageTreeSplit(std::vector<Item> items, std::shared_ptr<const ImageStore> store,
                 std::string where)
      : items_(std::move(items)), store_(std::move(store)), where_(std::move(where)) {}

  int64_t size() const override { return static_cast<int64_t>(items_.size()); }
  int64_t label(int64_t i) const override { return items_[i].label; }
  std::string source(int64_t i) const override { return items_[i].source; }
  absl::StatusOr<ImageShape> Shape(int64_t i) const override { return items_[i].shape; }

  absl::StatusOr<Image> Decode(int64_t i) const override {
    if (i < 0 || i >= size()) {
      return absl::OutOfRangeError(absl::StrCat(where_, ": no image ", i, " of ", size()));
    }
    const Item& item = items_[i];
    const std::string name = absl::StrCat(where_, "/", item.source);
    std::vector<uint8_t> scratch;
    absl::StatusOr<std::span<const uint8_t>> bytes = store_->Bytes(item.file, scratch);
    if (!bytes.ok()) return bytes.status();
    absl::StatusOr<Image> image = DecodeImage(name, *bytes, item.shape.channels);
    if (!image.ok()) return image.status();
    if (image->shape != item.shape) {
      return MalformedFile(name, absl::StrCat("decoded as ", ShapeText(image->shape),
                                              " but its header said ", ShapeText(item.shape),
                                              " when the dataset was opened (did it change?)"));
    }
    return image;
  }

 private:
  std::vector<Item> items_;
  std::shared_ptr<const ImageStore> store_;
  std::string where_;
};

std::unique_ptr<SplitReader> TreeSplit(const std::vector<TreeImage>& images,
                                       const std::vector<ListedFile>& files,
                                       const std::shared_ptr<const ImageStore>& store,
                                       const std::string& where) {
  std::vector<ImageTreeSplit::Item> items;
  items.reserve(images.size());
  for (const TreeImage& image : images) {
    items.push_back({image.file, files[image.file].path, image.label, image.shape});
  }
  return std::make_unique<ImageTreeSplit>(std::move(items), store, where);
}

}  // namespace

DatasetReader OpenImageTree(const ImageTree& tree, const std::vector<ListedFile>& files,
                            std::shared_ptr<const ImageStore> store, const std::string& where) {
  DatasetReader reader;
  reader.class_names = tree.class_names;
  reader.num_classes = static_cast<int64_t>(tree.class_names.size());
  reader.fixed_shape = tree.fixed_shape;
  reader.train = TreeSplit(tree.train, files, store, where);
  if (tree.has_test) reader.test = TreeSplit(tree.test, files, store, where);
  return reader;
}

absl::StatusOr<RawDataset> ReadImageTree(const std::string& where, const DatasetReader& reader) {
  RawDataset data;
  data.num_classes = reader.num_classes;
  for (const auto& [split, raw] :
       {std::pair{reader.train.get(), &data.train}, std::pair{reader.test.get(), &data.test}}) {
    if (split == nullptr) continue;
    for (int64_t i = 0; i < split->size(); ++i) {
      absl::StatusOr<Image> image = split->Decode(i);
      if (!image.ok()) return image.status();
      if (raw->labels.empty()) raw->shape = image->shape;
      if (image->shape != raw->shape) {
        return MalformedFile(
            where, absl::StrCat("images differ in size (", split->source(0), " is ",
                                ShapeText(raw->shape), ", ", split->source(i), " is ",
                                ShapeText(image->shape), "); read it image by image (Open)"));
      }
      raw->pixels.insert(raw->pixels.end(), image->pixels.begin(), image->pixels.end());
      raw->labels.push_back(split->label(i));
    }
  }
  if (data.test.labels.empty()) data.test.shape = data.train.shape;
  return data;
}

}  // namespace qnet::datasets
