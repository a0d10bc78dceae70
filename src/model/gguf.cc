// GGUF parsing. The Cursor refuses to read past the end of the buffer, so every length the
// file claims is validated before anything is sized or copied from it.
#include "model/gguf.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fmt/format.h>

#include "tqlm/error.h"

namespace tqlm::model {
namespace {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" read as little-endian u32
constexpr int kMaxArrayDepth = 8;        // nested arrays deeper than this are rejected
constexpr int kMaxDims = 4;              // GGML_MAX_DIMS

// Byte size of a fixed-size scalar type, 0 for string/array, -1 for an unknown type id.
int ScalarSize(uint32_t t) {
  switch (GgufType(t)) {
    case GgufType::kUint8:
    case GgufType::kInt8:
    case GgufType::kBool:
      return 1;
    case GgufType::kUint16:
    case GgufType::kInt16:
      return 2;
    case GgufType::kUint32:
    case GgufType::kInt32:
    case GgufType::kFloat32:
      return 4;
    case GgufType::kUint64:
    case GgufType::kInt64:
    case GgufType::kFloat64:
      return 8;
    case GgufType::kString:
    case GgufType::kArray:
      return 0;
  }
  return -1;
}

class Cursor {
 public:
  Cursor(const uint8_t* base, size_t size, const std::string& file)
      : base_(base), size_(size), file_(file) {}

  size_t pos() const { return pos_; }
  size_t remaining() const { return size_ - pos_; }

  // Ensures n more bytes exist; `what` names the item for the error message.
  void Need(uint64_t n, const std::string& what) const {
    if (n > remaining()) {
      throw Error(fmt::format("gguf: {}: {} needs {} bytes at offset {} but the file has {} "
                              "(truncated or corrupt)",
                              file_, what, n, pos_, size_));
    }
  }
  const uint8_t* Take(uint64_t n, const std::string& what) {
    Need(n, what);
    const uint8_t* p = base_ + pos_;
    pos_ += size_t(n);
    return p;
  }
  template <typename T>
  T Read(const std::string& what) {
    T v;
    std::memcpy(&v, Take(sizeof(T), what), sizeof(T));
    return v;
  }
  std::string_view ReadString(const std::string& what) {
    const uint64_t len = Read<uint64_t>(what + " length");
    const uint8_t* p = Take(len, what + fmt::format(" ({} bytes)", len));
    return std::string_view(reinterpret_cast<const char*>(p), size_t(len));
  }

 private:
  const uint8_t* base_;
  size_t size_;
  size_t pos_ = 0;
  const std::string& file_;
};

void ReadScalar(Cursor& c, GgufType type, GgufValue* v, const std::string& what) {
  v->type = type;
  auto set_signed = [&](int64_t s) {
    v->i64 = s;
    v->is_negative = s < 0;
    v->u64 = s < 0 ? 0 : uint64_t(s);
  };
  auto set_unsigned = [&](uint64_t u) {
    v->u64 = u;
    v->i64 = u > uint64_t(INT64_MAX) ? INT64_MAX : int64_t(u);
  };
  switch (type) {
    case GgufType::kUint8: set_unsigned(c.Read<uint8_t>(what)); break;
    case GgufType::kInt8: set_signed(c.Read<int8_t>(what)); break;
    case GgufType::kUint16: set_unsigned(c.Read<uint16_t>(what)); break;
    case GgufType::kInt16: set_signed(c.Read<int16_t>(what)); break;
    case GgufType::kUint32: set_unsigned(c.Read<uint32_t>(what)); break;
    case GgufType::kInt32: set_signed(c.Read<int32_t>(what)); break;
    case GgufType::kUint64: set_unsigned(c.Read<uint64_t>(what)); break;
    case GgufType::kInt64: set_signed(c.Read<int64_t>(what)); break;
    case GgufType::kFloat32: v->f64 = c.Read<float>(what); break;
    case GgufType::kFloat64: v->f64 = c.Read<double>(what); break;
    case GgufType::kBool: {
      const uint8_t b = c.Read<uint8_t>(what);
      if (b > 1) throw Error(fmt::format("gguf: {} is a bool with value {}", what, b));
      set_unsigned(b);
      break;
    }
    case GgufType::kString: v->str = c.ReadString(what); break;
    case GgufType::kArray: break;  // handled by ReadValue
  }
}

void ReadValue(Cursor& c, uint32_t type_id, GgufValue* v, const std::string& what, int depth) {
  if (ScalarSize(type_id) < 0) {
    throw Error(fmt::format("gguf: {} has unknown value type {}", what, type_id));
  }
  const GgufType type = GgufType(type_id);
  if (type != GgufType::kArray) {
    ReadScalar(c, type, v, what);
    return;
  }
  if (depth >= kMaxArrayDepth) {
    throw Error(fmt::format("gguf: {} nests arrays deeper than {}", what, kMaxArrayDepth));
  }
  v->type = GgufType::kArray;
  const uint32_t elem = c.Read<uint32_t>(what + " element type");
  const int elem_size = ScalarSize(elem);
  if (elem_size < 0) {
    throw Error(fmt::format("gguf: {} has unknown array element type {}", what, elem));
  }
  v->elem_type = GgufType(elem);
  v->count = c.Read<uint64_t>(what + " array length");
  // Each element takes at least `min_bytes`, so the count is bounded by what is left: this
  // check comes before anything is reserved.
  const uint64_t min_bytes = elem_size > 0 ? uint64_t(elem_size)
                             : v->elem_type == GgufType::kString ? 8 : 12;
  if (v->count > c.remaining() / min_bytes) {
    throw Error(fmt::format("gguf: {} claims {} elements of {} but only {} bytes remain", what,
                            v->count, GgufTypeName(v->elem_type), c.remaining()));
  }
  if (elem_size > 0) {
    v->raw = c.Take(v->count * uint64_t(elem_size), what + " array data");
    if (v->elem_type == GgufType::kBool) {
      for (uint64_t i = 0; i < v->count; ++i) {
        if (v->raw[i] > 1) {
          throw Error(fmt::format("gguf: {} element {} is a bool with value {}", what, i,
                                  v->raw[i]));
        }
      }
    }
  } else if (v->elem_type == GgufType::kString) {
    v->strings.reserve(size_t(v->count));
    for (uint64_t i = 0; i < v->count; ++i) {
      v->strings.push_back(c.ReadString(fmt::format("{}[{}]", what, i)));
    }
  } else {
    v->items.resize(size_t(v->count));
    for (uint64_t i = 0; i < v->count; ++i) {
      const std::string item = fmt::format("{}[{}]", what, i);
      const uint32_t t = c.Read<uint32_t>(item + " type");
      if (t != uint32_t(GgufType::kArray)) {
        // Nested arrays carry their own element type header; anything else is malformed.
        throw Error(fmt::format("gguf: {} inner type {} where an array was expected", item, t));
      }
      ReadValue(c, t, &v->items[size_t(i)], item, depth + 1);
    }
  }
}

}  // namespace

std::unique_ptr<GgufFile> GgufFile::Open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    throw Error(fmt::format("gguf: cannot open '{}': {}", path, std::strerror(errno)));
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int e = errno;
    ::close(fd);
    throw Error(fmt::format("gguf: cannot stat '{}': {}", path, std::strerror(e)));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    throw Error(fmt::format("gguf: '{}' is not a regular file", path));
  }
  std::unique_ptr<GgufFile> f(new GgufFile());
  f->name_ = path;
  f->size_ = size_t(st.st_size);
  if (f->size_ > 0) {
    void* m = ::mmap(nullptr, f->size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (m == MAP_FAILED) {
      const int e = errno;
      ::close(fd);
      throw Error(fmt::format("gguf: cannot mmap '{}': {}", path, std::strerror(e)));
    }
    f->mapping_ = m;
    f->mapping_size_ = f->size_;
    f->base_ = static_cast<const uint8_t*>(m);
  }
  ::close(fd);
  f->Parse();
  return f;
}

std::unique_ptr<GgufFile> GgufFile::FromMemory(const void* data, size_t size, std::string name) {
  std::unique_ptr<GgufFile> f(new GgufFile());
  f->name_ = std::move(name);
  f->base_ = static_cast<const uint8_t*>(data);
  f->size_ = data == nullptr ? 0 : size;
  f->Parse();
  return f;
}

std::unique_ptr<GgufFile> GgufFile::FromBytes(std::vector<uint8_t> bytes, std::string name) {
  std::unique_ptr<GgufFile> f(new GgufFile());
  f->name_ = std::move(name);
  f->owned_ = std::move(bytes);
  f->base_ = f->owned_.data();
  f->size_ = f->owned_.size();
  f->Parse();
  return f;
}

GgufFile::~GgufFile() {
  if (mapping_ != nullptr) ::munmap(mapping_, mapping_size_);
}

void GgufFile::Parse() {
  Cursor c(base_, size_, name_);
  const uint32_t magic = c.Read<uint32_t>("magic");
  if (magic != kMagic) {
    throw Error(fmt::format("gguf: {}: not a GGUF file (magic 0x{:08x})", name_, magic));
  }
  version_ = c.Read<uint32_t>("version");
  if (version_ != 2 && version_ != 3) {
    throw Error(fmt::format("gguf: {}: unsupported GGUF version {} (need 2 or 3)", name_,
                            version_));
  }
  const uint64_t n_tensors = c.Read<uint64_t>("tensor count");
  const uint64_t n_kv = c.Read<uint64_t>("metadata count");
  // A key-value pair takes at least 12 bytes (empty key + type), a tensor info at least 24.
  if (n_kv > c.remaining() / 12) {
    throw Error(fmt::format("gguf: {}: metadata count {} exceeds what {} bytes can hold", name_,
                            n_kv, size_));
  }
  if (n_tensors > c.remaining() / 24) {
    throw Error(fmt::format("gguf: {}: tensor count {} exceeds what {} bytes can hold", name_,
                            n_tensors, size_));
  }

  keys_.reserve(size_t(n_kv));
  for (uint64_t i = 0; i < n_kv; ++i) {
    const std::string what = fmt::format("metadata #{}", i);
    const size_t begin = c.pos();
    const std::string key(c.ReadString(what + " key"));
    const uint32_t type = c.Read<uint32_t>(fmt::format("metadata '{}' type", key));
    GgufValue v;
    ReadValue(c, type, &v, fmt::format("metadata '{}'", key), 0);
    if (!kv_.emplace(key, std::move(v)).second) {
      throw Error(fmt::format("gguf: {}: duplicate metadata key '{}'", name_, key));
    }
    keys_.push_back(key);
    kv_ranges_.emplace_back(begin, c.pos());
  }

  if (const GgufValue* a = Find("general.alignment")) {
    if (a->type != GgufType::kUint32) {
      throw Error(fmt::format("gguf: {}: general.alignment has type {}, expected uint32", name_,
                              GgufTypeName(a->type)));
    }
    if (a->u64 == 0 || (a->u64 & (a->u64 - 1)) != 0) {
      throw Error(fmt::format("gguf: {}: general.alignment {} is not a power of two", name_,
                              a->u64));
    }
    // The spec asks for a multiple of 8; the kernels read fp16/fp32 fields of tensor blocks in
    // place, so a smaller alignment would hand them misaligned data (found by the fuzzer).
    if (a->u64 < 8) {
      throw Error(fmt::format("gguf: {}: general.alignment {} is below 8", name_, a->u64));
    }
    alignment_ = a->u64;
  }

  tensors_.resize(size_t(n_tensors));
  for (uint64_t i = 0; i < n_tensors; ++i) {
    GgufTensor& t = tensors_[size_t(i)];
    t.name = std::string(c.ReadString(fmt::format("tensor #{} name", i)));
    const std::string what = fmt::format("tensor '{}'", t.name);
    const uint32_t n_dims = c.Read<uint32_t>(what + " dimension count");
    if (n_dims > uint32_t(kMaxDims)) {
      throw Error(fmt::format("gguf: {}: {} has {} dimensions (max {})", name_, what, n_dims,
                              kMaxDims));
    }
    t.n_dims = int(n_dims);
    uint64_t elements = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      const uint64_t ne = c.Read<uint64_t>(fmt::format("{} dimension {}", what, d));
      if (ne > uint64_t(INT64_MAX) || (ne != 0 && elements > uint64_t(INT64_MAX) / ne)) {
        throw Error(fmt::format("gguf: {}: {} has too many elements (dimension {} = {})", name_,
                                what, d, ne));
      }
      elements *= ne;
      t.ne[d] = int64_t(ne);
    }
    const uint32_t type_id = c.Read<uint32_t>(what + " type");
    const kernels::TypeTraits* traits = kernels::FindTypeTraits(type_id);
    if (traits == nullptr) {
      throw Error(fmt::format("gguf: {}: {} has unknown tensor type {}", name_, what, type_id));
    }
    t.type = traits->type;
    if (t.ne[0] % traits->block_size != 0) {
      throw Error(fmt::format("gguf: {}: {} row length {} is not a multiple of the {} block "
                              "size {}",
                              name_, what, t.ne[0], traits->name, traits->block_size));
    }
    const uint64_t blocks = elements / uint64_t(traits->block_size);
    if (blocks > uint64_t(SIZE_MAX) / traits->block_bytes) {
      throw Error(fmt::format("gguf: {}: {} byte size overflows", name_, what));
    }
    t.nbytes = size_t(blocks * traits->block_bytes);
    t.offset = c.Read<uint64_t>(what + " offset");
    if (t.offset % alignment_ != 0) {
      throw Error(fmt::format("gguf: {}: {} offset {} is not a multiple of the alignment {}",
                              name_, what, t.offset, alignment_));
    }
    if (!tensor_index_.emplace(t.name, size_t(i)).second) {
      throw Error(fmt::format("gguf: {}: duplicate tensor name '{}'", name_, t.name));
    }
  }

  // The data section starts at the next multiple of the alignment.
  const uint64_t end_of_infos = c.pos();
  data_offset_ = end_of_infos + (alignment_ - end_of_infos % alignment_) % alignment_;
  if (n_tensors > 0 && data_offset_ > size_) {
    throw Error(fmt::format("gguf: {}: data section at offset {} is past end of file (size {})",
                            name_, data_offset_, size_));
  }
  for (GgufTensor& t : tensors_) {
    const uint64_t avail = data_offset_ <= size_ ? size_ - data_offset_ : 0;
    if (t.offset > avail || t.nbytes > avail - t.offset) {
      throw Error(fmt::format("gguf: {}: tensor '{}' data ({} bytes at data offset {}, data "
                              "section at {}) runs past end of file (size {})",
                              name_, t.name, t.nbytes, t.offset, data_offset_, size_));
    }
    t.data = base_ + data_offset_ + t.offset;
  }

  // Tensors must not overlap: a corrupt table could otherwise alias two weights.
  std::vector<const GgufTensor*> by_offset;
  by_offset.reserve(tensors_.size());
  for (const GgufTensor& t : tensors_) by_offset.push_back(&t);
  std::sort(by_offset.begin(), by_offset.end(),
            [](const GgufTensor* a, const GgufTensor* b) { return a->offset < b->offset; });
  for (size_t i = 1; i < by_offset.size(); ++i) {
    const GgufTensor* prev = by_offset[i - 1];
    if (prev->nbytes > 0 && by_offset[i]->offset < prev->offset + prev->nbytes) {
      throw Error(fmt::format("gguf: {}: tensors '{}' and '{}' overlap", name_, prev->name,
                              by_offset[i]->name));
    }
  }
}

std::string_view GgufFile::RawMetadata(size_t i) const {
  if (i >= kv_ranges_.size()) {
    throw Error(fmt::format("gguf: {}: metadata #{} out of range ({} pairs)", name_, i,
                            kv_ranges_.size()));
  }
  const auto [b, e] = kv_ranges_[i];
  return std::string_view(reinterpret_cast<const char*>(base_ + b), e - b);
}

const GgufTensor* GgufFile::FindTensor(std::string_view name) const {
  auto it = tensor_index_.find(std::string(name));
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

const GgufTensor& GgufFile::GetTensor(std::string_view name) const {
  const GgufTensor* t = FindTensor(name);
  if (t == nullptr) throw Error(fmt::format("gguf: {}: missing tensor '{}'", name_, name));
  return *t;
}

}  // namespace tqlm::model
