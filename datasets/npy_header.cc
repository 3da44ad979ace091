#include "datasets/npy_header.h"

#include <cstring>
#include <optional>
#include <set>
#include <string_view>

#include "absl/strings/str_cat.h"
#include "datasets/gz_reader.h"

namespace qnet::datasets {
namespace {

constexpr char kMagic[] = "\x93NUMPY";
constexpr size_t kMagicBytes = 6;
constexpr int kMaxDims = 32;  // NumPy's own limit

// The dict literal, read left to right; every method leaves the position after what it read and
// returns nullopt (with `error` set) on anything unexpected.
class DictReader {
 public:
  explicit DictReader(std::string_view text) : text_(text) {}

  const std::string& error() const { return error_; }

  void SkipSpace() {
    while (pos_ < text_.size() && (text_[pos_] == ' ' || text_[pos_] == '\n')) ++pos_;
  }
  // Consumes `c` after optional spaces.
  bool Take(char c) {
    SkipSpace();
    if (pos_ < text_.size() && text_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }
  bool Expect(char c) {
    if (Take(c)) return true;
    return Fail(absl::StrCat("expected '", std::string(1, c), "'"));
  }
  bool AtEnd() {
    SkipSpace();
    return pos_ == text_.size();
  }

  // A quoted string without escapes.
  std::optional<std::string> String() {
    SkipSpace();
    if (pos_ >= text_.size() || (text_[pos_] != '\'' && text_[pos_] != '"')) {
      Fail("expected a quoted string");
      return std::nullopt;
    }
    const char quote = text_[pos_++];
    const size_t end = text_.find(quote, pos_);
    if (end == std::string_view::npos) {
      Fail("unterminated string");
      return std::nullopt;
    }
    std::string value(text_.substr(pos_, end - pos_));
    if (value.find('\\') != std::string::npos) {
      Fail("escape in a string");
      return std::nullopt;
    }
    pos_ = end + 1;
    return value;
  }

  std::optional<bool> Bool() {
    SkipSpace();
    for (const auto& [word, value] : {std::pair{"True", true}, std::pair{"False", false}}) {
      if (text_.substr(pos_).starts_with(word)) {
        pos_ += std::strlen(word);
        return value;
      }
    }
    Fail("expected True or False");
    return std::nullopt;
  }

  // "(a, b, c)", "(a,)" or "()".
  std::optional<std::vector<int64_t>> Tuple() {
    if (!Expect('(')) return std::nullopt;
    std::vector<int64_t> values;
    while (!Take(')')) {
      if (!values.empty() && !Expect(',')) return std::nullopt;
      if (Take(')')) break;  // trailing comma
      std::optional<int64_t> v = Integer();
      if (!v) return std::nullopt;
      if (values.size() == kMaxDims) {
        Fail(absl::StrCat("more than ", kMaxDims, " dimensions"));
        return std::nullopt;
      }
      values.push_back(*v);
    }
    return values;
  }

 private:
  std::optional<int64_t> Integer() {
    SkipSpace();
    const size_t start = pos_;
    int64_t value = 0;
    while (pos_ < text_.size() && text_[pos_] >= '0' && text_[pos_] <= '9') {
      if (pos_ - start >= 15) {  // 10^15 elements along one axis: no real array
        Fail("dimension too large");
        return std::nullopt;
      }
      value = value * 10 + (text_[pos_++] - '0');
    }
    if (pos_ == start) {
      Fail("expected a non-negative integer");
      return std::nullopt;
    }
    return value;
  }
  bool Fail(std::string what) {
    if (error_.empty()) error_ = absl::StrCat(what, " at offset ", pos_);
    return false;
  }

  std::string_view text_;
  size_t pos_ = 0;
  std::string error_;
};

uint32_t LittleEndian(std::span<const uint8_t> bytes, size_t at, int n) {
  uint32_t v = 0;
  for (int k = n - 1; k >= 0; --k) v = (v << 8) | bytes[at + k];
  return v;
}

}  // namespace

absl::StatusOr<NpyHeader> ParseNpyHeader(const std::string& name, std::span<const uint8_t> bytes) {
  if (bytes.size() < kMagicBytes + 4 || std::memcmp(bytes.data(), kMagic, kMagicBytes) != 0) {
    return MalformedFile(name, "not a NumPy .npy array (no \\x93NUMPY magic)");
  }
  const int major = bytes[6];
  if (major < 1 || major > 3) {
    return MalformedFile(name, absl::StrCat(".npy format version ", major, " is not supported"));
  }
  const size_t length_bytes = major == 1 ? 2 : 4;
  if (bytes.size() < 8 + length_bytes) return MalformedFile(name, "truncated .npy header");
  const size_t header_bytes = LittleEndian(bytes, 8, static_cast<int>(length_bytes));
  if (header_bytes > kMaxNpyHeaderBytes) {
    return MalformedFile(name, absl::StrCat(".npy header of ", header_bytes,
                                            " bytes exceeds the limit of ", kMaxNpyHeaderBytes));
  }
  const size_t start = 8 + length_bytes;
  if (bytes.size() < start + header_bytes) return MalformedFile(name, "truncated .npy header");

  DictReader dict(
      std::string_view(reinterpret_cast<const char*>(bytes.data()) + start, header_bytes));
  NpyHeader header;
  header.data_offset = start + header_bytes;
  std::set<std::string> seen;
  std::optional<bool> fortran_order;
  bool ok = dict.Expect('{');
  while (ok && !dict.Take('}')) {
    if (!seen.empty() && !(ok = dict.Expect(','))) break;
    if (dict.Take('}')) break;  // trailing comma
    std::optional<std::string> key = dict.String();
    if (!key || !dict.Expect(':')) {
      ok = false;
      break;
    }
    if (!seen.insert(*key).second) {
      return MalformedFile(name, absl::StrCat(".npy header repeats the key '", *key, "'"));
    }
    if (*key == "descr") {
      std::optional<std::string> descr = dict.String();
      ok = descr.has_value();
      if (ok) header.descr = *descr;
    } else if (*key == "fortran_order") {
      fortran_order = dict.Bool();
      ok = fortran_order.has_value();
    } else if (*key == "shape") {
      std::optional<std::vector<int64_t>> shape = dict.Tuple();
      ok = shape.has_value();
      if (ok) header.shape = *shape;
    } else {
      return MalformedFile(name, absl::StrCat(".npy header has the unexpected key '", *key,
                                              "' (only descr, fortran_order, shape)"));
    }
  }
  if (!ok || !dict.AtEnd()) {
    return MalformedFile(
        name, absl::StrCat("malformed .npy header: ", ok ? "text after the dict" : dict.error()));
  }
  for (const char* key : {"descr", "fortran_order", "shape"}) {
    if (!seen.contains(key)) {
      return MalformedFile(name, absl::StrCat(".npy header lacks the key '", key, "'"));
    }
  }
  if (*fortran_order) {
    return MalformedFile(name,
                         "Fortran-ordered array; save it C-ordered "
                         "(np.ascontiguousarray) instead");
  }
  return header;
}

absl::StatusOr<NpyDtype> ParseNpyDtype(const std::string& name, const std::string& descr) {
  // Byte order ('<' little, '>' big, '|' not applicable, '=' native, little on every platform
  // this builds for), kind ('u' or 'i'), size in bytes.
  if (descr.size() == 3 && std::string_view("<>|=").find(descr[0]) != std::string_view::npos &&
      (descr[1] == 'u' || descr[1] == 'i') &&
      std::string_view("1248").find(descr[2]) != std::string_view::npos) {
    return NpyDtype{descr[1] == 'i', descr[2] - '0', descr[0] == '>'};
  }
  return MalformedFile(name, absl::StrCat("dtype '", descr,
                                          "' is not an integer type (expected uint8 images and "
                                          "integer labels)"));
}

absl::StatusOr<uint64_t> NpyDataBytes(const std::string& name, const std::vector<int64_t>& shape,
                                      int item_bytes, uint64_t limit) {
  uint64_t total = static_cast<uint64_t>(item_bytes);
  for (int64_t d : shape) {
    if (d != 0 && total > limit / static_cast<uint64_t>(d)) {
      return MalformedFile(
          name, absl::StrCat("array shape declares more than ", limit, " bytes of data"));
    }
    total *= static_cast<uint64_t>(d);
  }
  return total;
}

}  // namespace qnet::datasets
