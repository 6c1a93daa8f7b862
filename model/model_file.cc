#include "model/model_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <set>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "model/status_macros.h"
#include "nlohmann/json.hpp"

// safetensors stores little-endian data; tensors are copied as raw bytes.
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "model_file.cc assumes a little-endian host"
#endif

namespace harmamba {
namespace {

using nlohmann::json;

constexpr char kMetadataKey[] = "__metadata__";
constexpr char kRevinPrefix[] = "revin_layer.";
constexpr size_t kLengthFieldBytes = 8;
// Bounds the element count of any header entry so byte arithmetic cannot
// overflow; far above any real model.
constexpr uint64_t kMaxElements = uint64_t{1} << 40;

using ShapeMap = std::map<std::string, std::vector<int64_t>>;

// Never throws: invalid UTF-8 in strings becomes U+FFFD.
std::string Dump(const json& value) {
  return value.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string ShapeString(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

template <typename... Args>
absl::Status Invalid(const Args&... args) {
  return absl::InvalidArgumentError(absl::StrCat(args...));
}

// One tensor as described by the header.
struct HeaderEntry {
  std::vector<int64_t> shape;
  uint64_t begin = 0;  // byte offsets relative to the data region
  uint64_t end = 0;
};

absl::StatusOr<HeaderEntry> ParseHeaderEntry(const std::string& name,
                                             const json& info) {
  if (!info.is_object()) {
    return Invalid("tensor '", name, "': header entry must be a JSON object");
  }
  const auto dtype = info.find("dtype");
  if (dtype == info.end() || !dtype->is_string()) {
    return Invalid("tensor '", name, "': missing dtype");
  }
  if (*dtype != "F32") {
    return Invalid("tensor '", name, "': dtype ", dtype->get<std::string>(),
                   " is not supported, expected F32");
  }
  HeaderEntry entry;
  const auto shape = info.find("shape");
  if (shape == info.end() || !shape->is_array()) {
    return Invalid("tensor '", name, "': missing shape");
  }
  uint64_t numel = 1;
  for (const json& dim : *shape) {
    if (!dim.is_number_unsigned()) {
      return Invalid("tensor '", name,
                     "': shape must hold non-negative integers, got ",
                     Dump(*shape));
    }
    const uint64_t d = dim.get<uint64_t>();
    if (d != 0 && numel > kMaxElements / d) {
      return Invalid("tensor '", name, "': shape ", Dump(*shape),
                     " is too large");
    }
    numel *= d;
    entry.shape.push_back(static_cast<int64_t>(d));
  }
  const auto offsets = info.find("data_offsets");
  if (offsets == info.end() || !offsets->is_array() || offsets->size() != 2 ||
      !(*offsets)[0].is_number_unsigned() ||
      !(*offsets)[1].is_number_unsigned() ||
      (*offsets)[0].get<uint64_t>() > (*offsets)[1].get<uint64_t>()) {
    return Invalid("tensor '", name,
                   "': data_offsets must be [begin, end] with 0 <= begin <= "
                   "end, got ",
                   offsets == info.end() ? "nothing" : Dump(*offsets));
  }
  entry.begin = (*offsets)[0].get<uint64_t>();
  entry.end = (*offsets)[1].get<uint64_t>();
  if (entry.end - entry.begin != numel * sizeof(float)) {
    return Invalid("tensor '", name, "': data_offsets [", entry.begin, ", ",
                   entry.end, "] span ", entry.end - entry.begin,
                   " bytes but shape ", ShapeString(entry.shape),
                   " of F32 needs ", numel * sizeof(float));
  }
  return entry;
}

// The data region must be covered exactly by the tensors, without gaps or
// overlaps, as the reference `safetensors` library requires.
absl::Status CheckDataLayout(const std::map<std::string, HeaderEntry>& entries,
                             uint64_t data_bytes) {
  std::vector<std::pair<const std::string*, const HeaderEntry*>> by_offset;
  for (const auto& [name, entry] : entries) {
    if (entry.end > data_bytes) {
      return Invalid("tensor '", name, "': data_offsets [", entry.begin, ", ",
                     entry.end, "] exceed the ", data_bytes,
                     " bytes after the header (data region truncated?)");
    }
    by_offset.push_back({&name, &entry});
  }
  std::sort(by_offset.begin(), by_offset.end(), [](auto a, auto b) {
    return std::make_pair(a.second->begin, a.second->end) <
           std::make_pair(b.second->begin, b.second->end);
  });
  uint64_t covered = 0;
  const std::string* previous = nullptr;
  for (const auto& [name, entry] : by_offset) {
    if (entry->begin < covered) {
      return Invalid("tensors '", *previous, "' and '", *name,
                     "' overlap in the data region");
    }
    if (entry->begin > covered) {
      return Invalid("tensor '", *name, "': ", entry->begin - covered,
                     " bytes before it belong to no tensor");
    }
    covered = entry->end;
    previous = name;
  }
  if (covered < data_bytes) {
    return Invalid(data_bytes - covered,
                   " bytes after the last tensor belong to no tensor");
  }
  return absl::OkStatus();
}

// Checks that `shapes` names exactly the tensors of `config` with their
// expected shapes; `revin_layer.*` entries are tolerated if `allow_revin`.
absl::Status CheckTensorSet(const ModelConfig& config, const ShapeMap& shapes,
                            bool allow_revin) {
  std::set<std::string> expected_names;
  for (const auto& [name, shape] : ExpectedTensors(config)) {
    expected_names.insert(name);
    const auto it = shapes.find(name);
    if (it == shapes.end()) return Invalid("missing tensor '", name, "'");
    if (it->second != shape) {
      return Invalid("tensor '", name, "': expected shape ", ShapeString(shape),
                     ", got ", ShapeString(it->second));
    }
  }
  for (const auto& [name, shape] : shapes) {
    if (expected_names.count(name) != 0) continue;
    if (allow_revin && absl::StartsWith(name, kRevinPrefix)) continue;
    return Invalid("unexpected tensor '", name, "'");
  }
  return absl::OkStatus();
}

absl::Status CheckFinite(const std::string& name,
                         const std::vector<float>& data) {
  for (size_t i = 0; i < data.size(); ++i) {
    if (!std::isfinite(data[i])) {
      return Invalid("tensor '", name, "': non-finite value ", data[i],
                     " at index ", i);
    }
  }
  return absl::OkStatus();
}

absl::Status WithPath(const std::string& path, const absl::Status& status) {
  return absl::Status(status.code(),
                      absl::StrCat(path, ": ", status.message()));
}

absl::Status WriteAll(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    const ssize_t n = ::write(fd, bytes.data(), bytes.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return absl::ErrnoToStatus(errno, "write");
    }
    bytes.remove_prefix(static_cast<size_t>(n));
  }
  return absl::OkStatus();
}

}  // namespace

int64_t HostTensor::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

const HostTensor& ModelWeights::at(const std::string& name) const {
  const auto it = tensors.find(name);
  if (it == tensors.end()) {
    std::fprintf(stderr, "ModelWeights::at: no tensor '%s'\n", name.c_str());
    std::abort();
  }
  return it->second;
}

int64_t ModelWeights::num_parameters() const {
  int64_t n = 0;
  for (const auto& [name, tensor] : tensors) n += tensor.numel();
  return n;
}

absl::Status ValidateWeights(const ModelWeights& weights) {
  RETURN_IF_ERROR(weights.config.Validate());
  ShapeMap shapes;
  for (const auto& [name, tensor] : weights.tensors) {
    shapes[name] = tensor.shape;
  }
  RETURN_IF_ERROR(
      CheckTensorSet(weights.config, shapes, /*allow_revin=*/false));
  for (const auto& [name, tensor] : weights.tensors) {
    if (static_cast<int64_t>(tensor.data.size()) != tensor.numel()) {
      return Invalid("tensor '", name, "': shape ", ShapeString(tensor.shape),
                     " needs ", tensor.numel(), " values, has ",
                     tensor.data.size());
    }
    RETURN_IF_ERROR(CheckFinite(name, tensor.data));
  }
  return absl::OkStatus();
}

absl::StatusOr<ModelWeights> ParseSafetensors(std::string_view bytes) {
  if (bytes.size() < kLengthFieldBytes) {
    return Invalid("truncated: ", bytes.size(),
                   " bytes, shorter than the 8-byte header length");
  }
  uint64_t header_bytes = 0;
  for (size_t i = 0; i < kLengthFieldBytes; ++i) {
    header_bytes |= uint64_t{static_cast<unsigned char>(bytes[i])} << (8 * i);
  }
  const uint64_t available = bytes.size() - kLengthFieldBytes;
  if (header_bytes > available) {
    return Invalid("header length ", header_bytes, " exceeds the ", available,
                   " bytes that follow it (truncated or not safetensors)");
  }
  const std::string_view header_text =
      bytes.substr(kLengthFieldBytes, header_bytes);
  const json header = json::parse(header_text.begin(), header_text.end(),
                                  nullptr, /*allow_exceptions=*/false);
  if (header.is_discarded()) return Invalid("bad JSON in the header");
  if (!header.is_object()) return Invalid("header must be a JSON object");

  std::map<std::string, std::string> metadata;
  std::map<std::string, HeaderEntry> entries;
  for (const auto& [key, value] : header.items()) {
    if (key == kMetadataKey) {
      if (!value.is_object()) {
        return Invalid(kMetadataKey, " must be a JSON object");
      }
      for (const auto& [meta_key, meta_value] : value.items()) {
        if (!meta_value.is_string()) {
          return Invalid(kMetadataKey, " entry ", meta_key,
                         " must be a string, got ", Dump(meta_value));
        }
        metadata[meta_key] = meta_value.get<std::string>();
      }
      continue;
    }
    ASSIGN_OR_RETURN(entries[key], ParseHeaderEntry(key, value));
  }
  const std::string_view data = bytes.substr(kLengthFieldBytes + header_bytes);
  RETURN_IF_ERROR(CheckDataLayout(entries, data.size()));

  ModelWeights weights;
  ASSIGN_OR_RETURN(weights.config, ConfigFromMetadata(metadata));
  ShapeMap shapes;
  for (const auto& [name, entry] : entries) shapes[name] = entry.shape;
  RETURN_IF_ERROR(CheckTensorSet(weights.config, shapes, /*allow_revin=*/true));

  for (const auto& [name, shape] : ExpectedTensors(weights.config)) {
    const HeaderEntry& entry = entries.at(name);
    HostTensor tensor;
    tensor.shape = shape;
    tensor.data.resize((entry.end - entry.begin) / sizeof(float));
    std::memcpy(tensor.data.data(), data.data() + entry.begin,
                entry.end - entry.begin);
    RETURN_IF_ERROR(CheckFinite(name, tensor.data));
    weights.tensors.emplace(name, std::move(tensor));
  }
  return weights;
}

absl::StatusOr<ModelWeights> LoadModelFile(const std::string& path) {
  std::FILE* file = std::fopen(path.c_str(), "rb");
  if (file == nullptr) {
    return absl::ErrnoToStatus(errno, absl::StrCat(path, ": cannot open"));
  }
  std::string bytes;
  char buffer[1 << 16];
  size_t n;
  while ((n = std::fread(buffer, 1, sizeof(buffer), file)) > 0) {
    bytes.append(buffer, n);
  }
  const bool read_failed = std::ferror(file) != 0;
  const int read_errno = errno;
  std::fclose(file);
  if (read_failed) {
    return absl::ErrnoToStatus(read_errno, absl::StrCat(path, ": read failed"));
  }
  absl::StatusOr<ModelWeights> weights = ParseSafetensors(bytes);
  if (!weights.ok()) return WithPath(path, weights.status());
  return weights;
}

absl::StatusOr<std::string> SerializeSafetensors(const ModelWeights& weights) {
  RETURN_IF_ERROR(ValidateWeights(weights));
  const auto expected = ExpectedTensors(weights.config);
  nlohmann::ordered_json header;
  header[kMetadataKey] = ConfigToMetadata(weights.config);
  uint64_t offset = 0;
  for (const auto& [name, shape] : expected) {
    const uint64_t size = weights.at(name).data.size() * sizeof(float);
    header[name] = {{"dtype", "F32"},
                    {"shape", shape},
                    {"data_offsets", json::array({offset, offset + size})}};
    offset += size;
  }
  std::string header_text = header.dump(
      -1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
  // Pad with spaces (valid JSON whitespace) so the data starts 8-byte aligned.
  header_text.append((8 - header_text.size() % 8) % 8, ' ');

  std::string out;
  out.reserve(kLengthFieldBytes + header_text.size() + offset);
  for (size_t i = 0; i < kLengthFieldBytes; ++i) {
    out.push_back(static_cast<char>((header_text.size() >> (8 * i)) & 0xff));
  }
  out += header_text;
  for (const auto& [name, shape] : expected) {
    const std::vector<float>& data = weights.at(name).data;
    out.append(reinterpret_cast<const char*>(data.data()),
               data.size() * sizeof(float));
  }
  return out;
}

absl::Status SaveModelFile(const ModelWeights& weights,
                           const std::string& path) {
  ASSIGN_OR_RETURN(const std::string bytes, SerializeSafetensors(weights));
  std::string temp_path = path + ".tmp.XXXXXX";
  const int fd = ::mkstemp(temp_path.data());
  if (fd < 0) {
    return absl::ErrnoToStatus(
        errno, absl::StrCat(path, ": cannot create a temporary file"));
  }
  absl::Status status = WriteAll(fd, bytes);
  // mkstemp creates the file 0600; a model file is meant to be shared.
  if (status.ok() && ::fchmod(fd, 0644) != 0) {
    status = absl::ErrnoToStatus(errno, "fchmod");
  }
  if (status.ok() && ::fsync(fd) != 0) {
    status = absl::ErrnoToStatus(errno, "fsync");
  }
  if (::close(fd) != 0 && status.ok()) {
    status = absl::ErrnoToStatus(errno, "close");
  }
  if (status.ok() && std::rename(temp_path.c_str(), path.c_str()) != 0) {
    status = absl::ErrnoToStatus(errno, "rename");
  }
  if (!status.ok()) {
    ::unlink(temp_path.c_str());
    return WithPath(path, status);
  }
  return absl::OkStatus();
}

std::vector<std::pair<std::string, std::vector<int64_t>>> ExpectedTensors(
    const ModelConfig& c) {
  const int64_t d = c.d_model, e = c.d_inner(), n = c.d_state, r = c.dt_rank();
  std::vector<std::pair<std::string, std::vector<int64_t>>> out = {
      {"patch_embed.proj.weight", {d, 1, c.patch, 1}},
      {"patch_embed.proj.bias", {d}},
      {"cls_token", {1, 1, d}},
      {"pos_embed", {1, c.num_tokens(), d}},
  };
  for (int i = 0; i < c.depth; ++i) {
    const std::string p = absl::StrCat("layers.", i, ".");
    out.push_back({p + "mixer.A_log", {e, n}});
    out.push_back({p + "mixer.D", {e}});
    out.push_back({p + "mixer.in_proj.weight", {2 * e, d}});
    out.push_back({p + "mixer.conv1d.weight", {e, 1, c.d_conv}});
    out.push_back({p + "mixer.conv1d.bias", {e}});
    out.push_back({p + "mixer.x_proj.weight", {r + 2 * n, e}});
    out.push_back({p + "mixer.dt_proj.weight", {e, r}});
    out.push_back({p + "mixer.dt_proj.bias", {e}});
    out.push_back({p + "mixer.out_proj.weight", {d, e}});
    out.push_back({p + "norm.weight", {d}});
    out.push_back({p + "norm.bias", {d}});
  }
  out.push_back({"norm_f.weight", {d}});
  out.push_back({"norm_f.bias", {d}});
  out.push_back({"head.weight", {c.num_classes(), d}});
  out.push_back({"head.bias", {c.num_classes()}});
  return out;
}

}  // namespace harmamba
