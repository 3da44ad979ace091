// The train/<class>/<image> layout that the image formats share (imagefolder: a folder on disk;
// archive: the entries of a tar or zip), independent of where the bytes live. A format lists its
// files with their headers (ListedFile), ArrangeImageTree turns the list into splits, classes and
// labels with every layout check, and ImageTreeReader decodes one split's images on demand from
// an ImageStore (the folder's files, the archive's bytes in memory).
//
// Layout rules (datasets/README.md):
//  - train/<class>/... and optionally test/<class>/... (or val/ in place of test/), either at the
//    top or under one common top-level folder ("myset/train/..."); other top-level entries are
//    ignored; names starting with '.' and __MACOSX/ folders are skipped everywhere.
//  - classes are the sorted folder names of train/; test/ may lack a class but not add one;
//    images may sit in subfolders of their class folder.
//  - a dataset is grey (1 channel) only if every image is; one colour image makes it 3 channels.
//  - the typical shape is the most common height x width (ties: the smallest).
#ifndef QNET_DATASETS_IMAGE_TREE_H_
#define QNET_DATASETS_IMAGE_TREE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "datasets/dataset_format.h"

namespace qnet::datasets {

// How much of a file the header parsers get first; a header that runs past it (a JPEG with a
// large EXIF block) is read again from the whole file.
inline constexpr size_t kHeaderPrefixBytes = 64 << 10;
// No image file is this large; a larger entry is refused rather than read into memory.
inline constexpr int64_t kMaxImageFileBytes = int64_t{512} << 20;

// One entry of a folder or archive, as listed.
struct ListedFile {
  std::string path;  // '/'-separated, relative: "myset/train/cat/001.png"
  bool directory = false;
  // Files: the stored shape from the header, or why the file is not a readable image. Only
  // consulted for files inside a split, so a README beside train/ does no harm.
  absl::StatusOr<ImageShape> header = ImageShape{};
};

// The header of an image whose first bytes are in `bytes` (`complete` when they are the whole
// file) into `header`; `name` is used in messages. A header that runs past `bytes` is tried once
// more after `read_rest` has appended the rest. Returns read_rest's failure (the storage, not the
// image, is broken); the image's own verdict, good or bad, goes to `header`.
absl::Status ReadListedHeader(const std::string& name, std::vector<uint8_t>& bytes, bool complete,
                              const std::function<absl::Status()>& read_rest,
                              absl::StatusOr<ImageShape>& header);

// Whether a listed path is skipped (hidden names, __MACOSX).
bool IsSkippedPath(const std::string& path);

// One image of a split after arranging.
struct TreeImage {
  size_t file;  // index into the listed files
  int64_t label;
  ImageShape shape;  // height and width as stored, channels of the dataset
};

struct ImageTree {
  std::vector<TreeImage> train, test;
  bool has_test = false;
  std::vector<std::string> class_names;
  ImageShape typical;
  bool fixed_shape = false;
};

// Splits, classes and labels from a listing; INVALID_ARGUMENT naming "WHERE/ENTRY" for a
// missing train split, an empty class folder, a test class unknown to train, a file outside a
// class folder, or a file inside a split that is not a readable image.
absl::StatusOr<ImageTree> ArrangeImageTree(const std::string& where,
                                           const std::vector<ListedFile>& files);

// The summary Inspect reports for an arranged tree; `files` as the format lists them.
DatasetSummary SummarizeImageTree(const ImageTree& tree, std::vector<std::string> files);

// The encoded bytes of listed files, wherever they are kept. Thread-safe.
class ImageStore {
 public:
  virtual ~ImageStore() = default;
  // The bytes of listed file `file`; the store may fill `scratch` and point into it.
  virtual absl::StatusOr<std::span<const uint8_t>> Bytes(size_t file,
                                                         std::vector<uint8_t>& scratch) const = 0;
};

// A DatasetReader over an arranged tree of the listed `files`. Messages name an image as
// "WHERE/PATH": the folder's or the archive's path, then the listed path.
DatasetReader OpenImageTree(const ImageTree& tree, const std::vector<ListedFile>& files,
                            std::shared_ptr<const ImageStore> store, const std::string& where);

// Every image decoded into RawSplits, for Read on an image format: refused (naming two sizes)
// unless all images have one shape.
absl::StatusOr<RawDataset> ReadImageTree(const std::string& where, const DatasetReader& reader);

}  // namespace qnet::datasets

#endif  // QNET_DATASETS_IMAGE_TREE_H_
