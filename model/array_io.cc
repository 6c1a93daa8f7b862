#include "model/array_io.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "model/status_macros.h"

namespace harmamba {
namespace {

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "array IO assumes a little-endian host");

std::string_view ToStd(absl::string_view s) { return {s.data(), s.size()}; }

constexpr char kNpyMagic[] = "\x93NUMPY";
constexpr size_t kNpyMagicSize = 6;

std::string ShapeString(const std::vector<int64_t>& shape) {
  if (shape.size() == 1) return absl::StrCat("(", shape[0], ",)");
  return absl::StrCat("(", absl::StrJoin(shape, ", "), ")");
}

// Finds `key` (single- or double-quoted) in a .npy header dict and returns the
// text after its colon, or npos.
size_t FindDictValue(absl::string_view header, absl::string_view key) {
  for (const char quote : {'\'', '"'}) {
    const std::string quoted =
        absl::StrCat(std::string(1, quote), key, std::string(1, quote));
    size_t pos = header.find(quoted);
    if (pos == absl::string_view::npos) continue;
    pos += quoted.size();
    while (pos < header.size() && header[pos] == ' ') ++pos;
    if (pos >= header.size() || header[pos] != ':')
      return absl::string_view::npos;
    ++pos;
    while (pos < header.size() && header[pos] == ' ') ++pos;
    return pos;
  }
  return absl::string_view::npos;
}

struct NpyHeader {
  char kind = 0;  // 'f', 'i', 'u', 'b'
  int itemsize = 0;
  std::string descr;
  std::vector<int64_t> shape;
};

absl::StatusOr<NpyHeader> ParseNpyHeaderDict(absl::string_view header) {
  NpyHeader result;
  // descr
  size_t pos = FindDictValue(header, "descr");
  if (pos == absl::string_view::npos) {
    return absl::InvalidArgumentError("npy header has no 'descr' entry");
  }
  const char quote = header[pos];
  if (quote != '\'' && quote != '"') {
    return absl::InvalidArgumentError(absl::StrCat(
        "npy dtype is not a simple dtype (structured arrays are not "
        "supported): ",
        header.substr(pos, 40)));
  }
  const size_t end = header.find(quote, pos + 1);
  if (end == absl::string_view::npos) {
    return absl::InvalidArgumentError("npy header: unterminated 'descr'");
  }
  result.descr = std::string(header.substr(pos + 1, end - pos - 1));
  absl::string_view descr = result.descr;
  if (!descr.empty() && (descr[0] == '<' || descr[0] == '>' ||
                         descr[0] == '|' || descr[0] == '=')) {
    const char order = descr[0];
    descr.remove_prefix(1);
    if (order == '>' && descr.size() >= 2 && descr.substr(1) != "1") {
      return absl::InvalidArgumentError(absl::StrCat(
          "npy dtype '", result.descr,
          "' is big-endian; only little-endian arrays are supported"));
    }
  }
  int itemsize = 0;
  if (descr.size() < 2 || !absl::SimpleAtoi(descr.substr(1), &itemsize)) {
    return absl::InvalidArgumentError(
        absl::StrCat("npy dtype '", result.descr, "' is not supported"));
  }
  const char kind = descr[0];
  const bool supported =
      (kind == 'f' && (itemsize == 2 || itemsize == 4 || itemsize == 8)) ||
      ((kind == 'i' || kind == 'u') &&
       (itemsize == 1 || itemsize == 2 || itemsize == 4 || itemsize == 8)) ||
      (kind == 'b' && itemsize == 1);
  if (!supported) {
    return absl::InvalidArgumentError(absl::StrCat(
        "npy dtype '", result.descr,
        "' is not supported (expected float16/32/64, (u)int8..64 or bool)"));
  }
  result.kind = kind;
  result.itemsize = itemsize;

  // fortran_order
  pos = FindDictValue(header, "fortran_order");
  if (pos == absl::string_view::npos) {
    return absl::InvalidArgumentError(
        "npy header has no 'fortran_order' entry");
  }
  if (header.substr(pos, 4) == "True") {
    return absl::InvalidArgumentError(
        "npy array is in Fortran order (fortran_order: True); only C order is "
        "supported: save it with np.ascontiguousarray(x)");
  }
  if (header.substr(pos, 5) != "False") {
    return absl::InvalidArgumentError(
        "npy header: 'fortran_order' is neither True nor False");
  }

  // shape
  pos = FindDictValue(header, "shape");
  if (pos == absl::string_view::npos || header[pos] != '(') {
    return absl::InvalidArgumentError("npy header has no 'shape' tuple");
  }
  const size_t close = header.find(')', pos);
  if (close == absl::string_view::npos) {
    return absl::InvalidArgumentError("npy header: unterminated 'shape'");
  }
  for (absl::string_view item :
       absl::StrSplit(header.substr(pos + 1, close - pos - 1), ',',
                      absl::SkipWhitespace())) {
    item = absl::StripAsciiWhitespace(item);
    if (!item.empty() && (item.back() == 'L' || item.back() == 'l')) {
      item.remove_suffix(1);  // Python 2 long literals
    }
    int64_t dim = 0;
    if (!absl::SimpleAtoi(item, &dim) || dim < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("npy header: bad shape entry '", item, "'"));
    }
    result.shape.push_back(dim);
  }
  return result;
}

// IEEE half -> float.
float HalfToFloat(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exponent = (h >> 10) & 0x1fu;
  const uint32_t mantissa = h & 0x3ffu;
  float magnitude;
  if (exponent == 0) {
    magnitude = std::ldexp(static_cast<float>(mantissa), -24);
  } else if (exponent == 31) {
    magnitude = mantissa == 0 ? std::numeric_limits<float>::infinity()
                              : std::numeric_limits<float>::quiet_NaN();
  } else {
    magnitude = std::ldexp(static_cast<float>(mantissa | 0x400u),
                           static_cast<int>(exponent) - 25);
  }
  return sign ? -magnitude : magnitude;
}

template <typename T>
T LoadLittleEndian(const char* p) {
  T value;
  std::memcpy(&value, p, sizeof(T));
  return value;
}

absl::Status ConvertNpyData(const NpyHeader& header, const char* data,
                            int64_t numel, NpyArray* out) {
  if (header.kind == 'f') {
    out->float_data.resize(numel);
    float* dst = out->float_data.data();
    for (int64_t i = 0; i < numel; ++i) {
      const char* p = data + i * header.itemsize;
      switch (header.itemsize) {
        case 2:
          dst[i] = HalfToFloat(LoadLittleEndian<uint16_t>(p));
          break;
        case 4:
          dst[i] = LoadLittleEndian<float>(p);
          break;
        default:
          dst[i] = static_cast<float>(LoadLittleEndian<double>(p));
          break;
      }
    }
    return absl::OkStatus();
  }
  out->is_integer = true;
  out->int_data.resize(numel);
  int64_t* dst = out->int_data.data();
  const bool is_signed = header.kind == 'i';
  for (int64_t i = 0; i < numel; ++i) {
    const char* p = data + i * header.itemsize;
    switch (header.itemsize) {
      case 1:
        dst[i] = is_signed ? int64_t{LoadLittleEndian<int8_t>(p)}
                           : int64_t{LoadLittleEndian<uint8_t>(p)};
        break;
      case 2:
        dst[i] = is_signed ? int64_t{LoadLittleEndian<int16_t>(p)}
                           : int64_t{LoadLittleEndian<uint16_t>(p)};
        break;
      case 4:
        dst[i] = is_signed ? int64_t{LoadLittleEndian<int32_t>(p)}
                           : int64_t{LoadLittleEndian<uint32_t>(p)};
        break;
      default:
        if (is_signed) {
          dst[i] = LoadLittleEndian<int64_t>(p);
        } else {
          const uint64_t v = LoadLittleEndian<uint64_t>(p);
          if (v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
            return absl::InvalidArgumentError(absl::StrCat(
                "npy uint64 element ", i, " (", v, ") does not fit in int64"));
          }
          dst[i] = static_cast<int64_t>(v);
        }
        break;
    }
  }
  return absl::OkStatus();
}

absl::Status WithPath(const std::string& path, const absl::Status& status) {
  if (status.ok()) return status;
  return absl::Status(status.code(),
                      absl::StrCat(path, ": ", status.message()));
}

std::string Lowercase(std::string s) {
  absl::AsciiStrToLower(&s);
  return s;
}

bool EndsWith(absl::string_view s, absl::string_view suffix) {
  return s.size() >= suffix.size() &&
         s.substr(s.size() - suffix.size()) == suffix;
}

absl::Status CheckFinite(const std::string& path, const WindowArray& windows) {
  for (size_t i = 0; i < windows.data.size(); ++i) {
    if (!std::isfinite(windows.data[i])) {
      const int64_t channel = static_cast<int64_t>(i) % windows.c;
      const int64_t sample = static_cast<int64_t>(i) / windows.c % windows.t;
      const int64_t window = static_cast<int64_t>(i) / (windows.c * windows.t);
      return absl::InvalidArgumentError(absl::StrCat(
          path, ": window ", window, ", sample ", sample, ", channel ", channel,
          " is not finite (", windows.data[i], ")"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<WindowArray> NpyToWindows(const std::string& path,
                                         int window_length, int channels) {
  ASSIGN_OR_RETURN(NpyArray array, ReadNpy(path));
  const std::vector<int64_t>& shape = array.shape;
  WindowArray windows;
  if (shape.size() == 3) {
    windows.n = shape[0];
    windows.t = shape[1];
    windows.c = shape[2];
  } else if (shape.size() == 2) {
    windows.n = 1;
    windows.t = shape[0];
    windows.c = shape[1];
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": shape ", ShapeString(shape), ", expected (N, ", window_length,
        ", ", channels, ") or (", window_length, ", ", channels, ")"));
  }
  if (windows.c != channels) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": shape ", ShapeString(shape), " has ", windows.c,
                     " channels, expected ", channels, " (shape (N, ",
                     window_length, ", ", channels, "))"));
  }
  if (windows.t != window_length) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": shape ", ShapeString(shape), " has windows of ",
                     windows.t, " samples, expected ", window_length,
                     " (shape (N, ", window_length, ", ", channels, "))"));
  }
  if (array.is_integer) {
    windows.data.assign(array.int_data.begin(), array.int_data.end());
  } else {
    windows.data = std::move(array.float_data);
  }
  return windows;
}

}  // namespace

int64_t NpyArray::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

absl::StatusOr<NpyArray> ParseNpy(std::string_view npy_bytes) {
  const absl::string_view bytes(npy_bytes.data(), npy_bytes.size());
  if (bytes.size() < kNpyMagicSize + 2 ||
      bytes.substr(0, kNpyMagicSize) !=
          absl::string_view(kNpyMagic, kNpyMagicSize)) {
    return absl::InvalidArgumentError(
        "not a .npy file (missing the \\x93NUMPY magic)");
  }
  const int major = static_cast<uint8_t>(bytes[6]);
  const int minor = static_cast<uint8_t>(bytes[7]);
  size_t header_start;
  size_t header_len;
  if (major == 1) {
    if (bytes.size() < 10) {
      return absl::InvalidArgumentError("npy file truncated in the header");
    }
    header_start = 10;
    header_len = LoadLittleEndian<uint16_t>(bytes.data() + 8);
  } else if (major == 2 || major == 3) {
    if (bytes.size() < 12) {
      return absl::InvalidArgumentError("npy file truncated in the header");
    }
    header_start = 12;
    header_len = LoadLittleEndian<uint32_t>(bytes.data() + 8);
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("npy format version ", major, ".", minor,
                     " is not supported (expected 1.0, 2.0 or 3.0)"));
  }
  if (header_len > bytes.size() - header_start) {
    return absl::InvalidArgumentError(
        absl::StrCat("npy header length ", header_len,
                     " exceeds the file size ", bytes.size()));
  }
  ASSIGN_OR_RETURN(NpyHeader header,
                   ParseNpyHeaderDict(bytes.substr(header_start, header_len)));
  const size_t data_start = header_start + header_len;
  const uint64_t available = bytes.size() - data_start;
  // Multiply with an overflow guard: any product beyond the file is an error.
  uint64_t numel = 1;
  bool too_big = false;
  for (int64_t d : header.shape) {
    if (d != 0 && numel > available / static_cast<uint64_t>(d)) too_big = true;
    numel *= static_cast<uint64_t>(d);
  }
  if (too_big || numel * header.itemsize != available) {
    return absl::InvalidArgumentError(absl::StrCat(
        "npy data is ", available, " bytes, but shape ",
        ShapeString(header.shape), " of '", header.descr, "' needs ",
        too_big ? std::string("more") : absl::StrCat(numel * header.itemsize),
        too_big || numel * header.itemsize > available ? " (truncated file?)"
                                                       : ""));
  }
  NpyArray array;
  array.shape = header.shape;
  array.descr = header.descr;
  RETURN_IF_ERROR(ConvertNpyData(header, bytes.data() + data_start,
                                 static_cast<int64_t>(numel), &array));
  return array;
}

absl::StatusOr<NpyArray> ReadNpy(const std::string& path) {
  ASSIGN_OR_RETURN(std::string bytes, ReadWholeFile(path));
  absl::StatusOr<NpyArray> array = ParseNpy(bytes);
  if (!array.ok()) return WithPath(path, array.status());
  return array;
}

absl::StatusOr<std::string> SerializeNpyFloat32(
    const std::vector<int64_t>& shape, absl::Span<const float> data) {
  int64_t numel = 1;
  for (int64_t d : shape) {
    if (d < 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "npy shape ", ShapeString(shape), " has a negative dim"));
    }
    numel *= d;
  }
  if (numel != static_cast<int64_t>(data.size())) {
    return absl::InvalidArgumentError(
        absl::StrCat("npy shape ", ShapeString(shape), " holds ", numel,
                     " values, but the data has ", data.size()));
  }
  std::string dict = absl::StrCat("{'descr': '<f4', 'fortran_order': False, ",
                                  "'shape': ", ShapeString(shape), ", }");
  // NumPy pads the header with spaces and a final newline so that the data
  // starts on a 64-byte boundary.
  const size_t unpadded = kNpyMagicSize + 2 + 2 + dict.size() + 1;
  const size_t padding = (64 - unpadded % 64) % 64;
  dict.append(padding, ' ');
  dict.push_back('\n');
  if (dict.size() > 0xffff) {
    return absl::InvalidArgumentError("npy header too long for version 1.0");
  }
  std::string out(kNpyMagic, kNpyMagicSize);
  out.push_back('\x01');
  out.push_back('\x00');
  out.push_back(static_cast<char>(dict.size() & 0xff));
  out.push_back(static_cast<char>(dict.size() >> 8));
  out += dict;
  const size_t data_start = out.size();
  out.resize(data_start + data.size() * sizeof(float));
  if (!data.empty()) {
    std::memcpy(&out[data_start], data.data(), data.size() * sizeof(float));
  }
  return out;
}

absl::Status WriteNpyFloat32(const std::string& path,
                             const std::vector<int64_t>& shape,
                             absl::Span<const float> data) {
  ASSIGN_OR_RETURN(std::string bytes, SerializeNpyFloat32(shape, data));
  std::FILE* file = std::fopen(path.c_str(), "wb");
  if (file == nullptr) {
    return absl::UnavailableError(absl::StrCat(
        path, ": cannot open for writing: ", std::strerror(errno)));
  }
  const size_t written = std::fwrite(bytes.data(), 1, bytes.size(), file);
  const bool closed = std::fclose(file) == 0;
  if (written != bytes.size() || !closed) {
    return absl::UnavailableError(
        absl::StrCat(path, ": write failed: ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

NumberParse ParseFiniteFloat(std::string_view text, float* value) {
  if (!text.empty() && text[0] == '+') {
    text.remove_prefix(1);
    // from_chars takes a '-' but no '+': "+-1" and "++1" are not numbers.
    if (!text.empty() && (text[0] == '+' || text[0] == '-')) {
      return NumberParse::kNotANumber;
    }
  }
  if (text.empty()) return NumberParse::kNotANumber;
  const char* begin = text.data();
  const char* end = begin + text.size();
  float parsed = 0.0f;
  std::from_chars_result result = std::from_chars(begin, end, parsed);
  if (result.ec == std::errc::result_out_of_range && result.ptr == end) {
    // Overflow or underflow: tell them apart in double precision, where
    // float32's range is far from the limits.
    double wide = 0.0;
    result = std::from_chars(begin, end, wide);
    if (result.ec == std::errc::result_out_of_range) {
      const std::string copy(text);
      wide = std::strtod(copy.c_str(), nullptr);
    }
    parsed = static_cast<float>(wide);
  } else if (result.ec != std::errc() || result.ptr != end) {
    return NumberParse::kNotANumber;
  }
  if (!std::isfinite(parsed)) return NumberParse::kNotFinite;
  *value = parsed;
  return NumberParse::kOk;
}

absl::StatusOr<std::string> ReadWholeFile(const std::string& path) {
  struct stat info;
  if (::stat(path.c_str(), &info) != 0) {
    if (errno == ENOENT) {
      return absl::NotFoundError(absl::StrCat(path, ": no such file"));
    }
    return absl::UnavailableError(
        absl::StrCat(path, ": ", std::strerror(errno)));
  }
  if (!S_ISREG(info.st_mode)) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": not a regular file"));
  }
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> file(
      std::fopen(path.c_str(), "rb"), &std::fclose);
  if (file == nullptr) {
    return absl::UnavailableError(
        absl::StrCat(path, ": cannot open: ", std::strerror(errno)));
  }
  std::string bytes(static_cast<size_t>(info.st_size), '\0');
  const size_t read = std::fread(bytes.data(), 1, bytes.size(), file.get());
  if (read != bytes.size()) {
    return absl::UnavailableError(
        absl::StrCat(path, ": read ", read, " of ", bytes.size(), " bytes"));
  }
  return bytes;
}

absl::StatusOr<WindowArray> ReadF32Windows(const std::string& path,
                                           int window_length, int channels) {
  ASSIGN_OR_RETURN(std::string bytes, ReadWholeFile(path));
  const uint64_t window_bytes =
      static_cast<uint64_t>(window_length) * channels * sizeof(float);
  if (bytes.empty() || bytes.size() % window_bytes != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": size ", bytes.size(), " bytes is not a positive multiple of ",
        window_bytes, " (window_length ", window_length, " x channels ",
        channels, " x 4 bytes of float32)"));
  }
  WindowArray windows;
  windows.n = static_cast<int64_t>(bytes.size() / window_bytes);
  windows.t = window_length;
  windows.c = channels;
  windows.data.resize(bytes.size() / sizeof(float));
  std::memcpy(windows.data.data(), bytes.data(), bytes.size());
  return windows;
}

absl::StatusOr<WindowArray> ParseCsvWindows(std::string_view csv_text,
                                            int window_length, int channels) {
  const absl::string_view text(csv_text.data(), csv_text.size());
  if (window_length <= 0 || channels <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("window_length (", window_length, ") and channels (",
                     channels, ") must be positive"));
  }
  WindowArray windows;
  windows.t = window_length;
  windows.c = channels;
  std::vector<absl::string_view> fields;
  fields.reserve(channels);
  bool seen_content = false;
  int64_t rows = 0;
  int64_t line_number = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t eol = text.find('\n', pos);
    if (eol == absl::string_view::npos) eol = text.size();
    absl::string_view line = text.substr(pos, eol - pos);
    pos = eol + 1;
    ++line_number;
    if (absl::StripAsciiWhitespace(line).empty()) continue;

    fields.clear();
    for (absl::string_view field : absl::StrSplit(line, ',')) {
      fields.push_back(absl::StripAsciiWhitespace(field));
    }
    if (!seen_content) {
      seen_content = true;
      float ignored;
      const bool is_header =
          std::all_of(fields.begin(), fields.end(), [&](absl::string_view f) {
            return !f.empty() && ParseFiniteFloat(ToStd(f), &ignored) ==
                                     NumberParse::kNotANumber;
          });
      if (is_header) {
        if (static_cast<int>(fields.size()) != channels) {
          return absl::InvalidArgumentError(absl::StrCat(
              "line ", line_number, ": header has ", fields.size(),
              " columns, expected ", channels, " (one per channel)"));
        }
        for (absl::string_view f : fields) {
          if (f.size() >= 2 && f.front() == '"' && f.back() == '"') {
            f = f.substr(1, f.size() - 2);
          }
          windows.column_names.emplace_back(f);
        }
        continue;
      }
    }
    if (static_cast<int>(fields.size()) != channels) {
      return absl::InvalidArgumentError(
          absl::StrCat("line ", line_number, ": ", fields.size(),
                       " columns, expected ", channels, " (one per channel)"));
    }
    for (int column = 0; column < channels; ++column) {
      float value = 0.0f;
      switch (ParseFiniteFloat(ToStd(fields[column]), &value)) {
        case NumberParse::kOk:
          break;
        case NumberParse::kNotANumber:
          return absl::InvalidArgumentError(
              absl::StrCat("line ", line_number, ", column ", column + 1, ": '",
                           fields[column], "' is not a number"));
        case NumberParse::kNotFinite:
          return absl::InvalidArgumentError(
              absl::StrCat("line ", line_number, ", column ", column + 1, ": '",
                           fields[column], "' is not a finite float32 value"));
      }
      windows.data.push_back(value);
    }
    ++rows;
  }
  windows.n = rows / window_length;
  windows.leftover_samples = rows % window_length;
  windows.data.resize(windows.n * window_length * channels);
  return windows;
}

absl::StatusOr<WindowArray> ReadCsvWindows(const std::string& path,
                                           int window_length, int channels) {
  ASSIGN_OR_RETURN(std::string text, ReadWholeFile(path));
  absl::StatusOr<WindowArray> windows =
      ParseCsvWindows(text, window_length, channels);
  if (!windows.ok()) return WithPath(path, windows.status());
  return windows;
}

absl::StatusOr<WindowArray> ReadWindows(const std::string& path,
                                        int window_length, int channels) {
  if (window_length <= 0 || channels <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("window_length (", window_length, ") and channels (",
                     channels, ") must be positive"));
  }
  const std::string lower = Lowercase(path);
  WindowArray windows;
  if (EndsWith(lower, ".npy")) {
    ASSIGN_OR_RETURN(windows, NpyToWindows(path, window_length, channels));
  } else if (EndsWith(lower, ".f32")) {
    ASSIGN_OR_RETURN(windows, ReadF32Windows(path, window_length, channels));
  } else if (EndsWith(lower, ".csv")) {
    ASSIGN_OR_RETURN(windows, ReadCsvWindows(path, window_length, channels));
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": unknown file type; expected a .npy, .f32 or .csv file"));
  }
  if (windows.n == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": no whole window of ", window_length, " samples (",
                     windows.leftover_samples, " samples read)"));
  }
  RETURN_IF_ERROR(CheckFinite(path, windows));
  return windows;
}

}  // namespace harmamba
