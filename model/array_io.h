// Reading and writing arrays of sensor windows without LibTorch: NumPy .npy
// files, headerless little-endian float32 (.f32) and CSV text.
//
// Used by the CLI (`harmamba predict/eval`), the server's client tools and the
// dataset readers. All functions are thread-safe (no shared state). The host
// must be little-endian (checked at compile time).
#ifndef HARMAMBA_MODEL_ARRAY_IO_H_
#define HARMAMBA_MODEL_ARRAY_IO_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace harmamba {

// A dense C-order array read from a .npy file. Floating-point arrays (f2, f4,
// f8) fill `float_data` (converted to float32); integer and bool arrays
// (i1..i8, u1..u8, b1) fill `int_data`. The other vector is empty.
struct NpyArray {
  std::vector<int64_t> shape;  // empty for a 0-d array (one element)
  std::string descr;           // the dtype as written in the file, e.g. "<f4"
  bool is_integer = false;
  std::vector<float> float_data;
  std::vector<int64_t> int_data;

  int64_t numel() const;
};

// Parses a .npy image, format version 1.0, 2.0 or 3.0. Refuses, with a message
// naming the problem: bad magic, truncated header, a header dict without
// descr/fortran_order/shape, fortran_order True, big-endian or unsupported
// dtypes (complex, strings, objects, structured), uint64 values above
// INT64_MAX, and a data size that differs from shape x itemsize.
absl::StatusOr<NpyArray> ParseNpy(std::string_view bytes);

// Reads and parses a .npy file; error messages start with the path.
absl::StatusOr<NpyArray> ReadNpy(const std::string& path);

// A .npy v1.0 image of a little-endian float32 C-order array. `data.size()`
// must equal the product of `shape` (InvalidArgument otherwise).
absl::StatusOr<std::string> SerializeNpyFloat32(
    const std::vector<int64_t>& shape, absl::Span<const float> data);

// Writes SerializeNpyFloat32(shape, data) to `path` (e.g. logits, shape
// (N, K)). Replaces an existing file.
absl::Status WriteNpyFloat32(const std::string& path,
                             const std::vector<int64_t>& shape,
                             absl::Span<const float> data);

// `n` windows of `t` samples of `c` channels, C order: window i, time step j,
// channel k is data[(i * t + j) * c + k].
struct WindowArray {
  int64_t n = 0;
  int64_t t = 0;
  int64_t c = 0;
  std::vector<float> data;
  // Samples (CSV rows) after the last whole window, which are not in `data`.
  // Callers should tell the user; always 0 for .npy and .f32.
  int64_t leftover_samples = 0;
  // The CSV header's column names (surrounding double quotes removed) when
  // the file has a header; else empty.
  std::vector<std::string> column_names;
};

// Headerless little-endian float32, N x window_length x channels. The file size
// must be a positive multiple of window_length * channels * 4 bytes.
absl::StatusOr<WindowArray> ReadF32Windows(const std::string& path,
                                           int window_length, int channels);

// CSV text, one sample per row, `channels` numeric columns separated by commas
// (whitespace around values is ignored, blank lines are skipped, CRLF is
// accepted). A first row made only of non-numeric names is a header and is
// skipped. Rows are cut into consecutive, non-overlapping windows of
// `window_length` rows; the rows after the last whole window are counted in
// `leftover_samples` (n may be 0). Errors name the 1-based line (and column):
// a wrong column count, a value that is not a number, NaN, Inf or out of
// float32 range.
absl::StatusOr<WindowArray> ParseCsvWindows(std::string_view text,
                                            int window_length, int channels);
absl::StatusOr<WindowArray> ReadCsvWindows(const std::string& path,
                                           int window_length, int channels);

// Reads windows of shape (window_length, channels) from `path`, choosing the
// format by extension (case-insensitive):
//   .npy  float or integer array of shape (N, T, C), or (T, C) read as N = 1;
//   .f32  see ReadF32Windows;
//   .csv  see ParseCsvWindows.
// Errors: NotFound for a missing file; InvalidArgument for an unknown
// extension, a wrong shape (the message gives the expected (N, T, C) with the
// numbers), a wrong channel count, non-finite values, or no whole window.
absl::StatusOr<WindowArray> ReadWindows(const std::string& path,
                                        int window_length, int channels);

// How a decimal number in text parsed (see ParseFiniteFloat).
enum class NumberParse { kOk, kNotANumber, kNotFinite };

// Parses all of `text` (no surrounding whitespace; a leading '+' is allowed)
// as a decimal float, locale-independently, rounding to the nearest float32.
// kNotFinite for "nan", "inf" and values beyond the float32 range; values
// below the smallest subnormal become 0.
NumberParse ParseFiniteFloat(std::string_view text, float* value);

// The whole content of a file. NotFound when it does not exist; the message
// starts with the path.
absl::StatusOr<std::string> ReadWholeFile(const std::string& path);

}  // namespace harmamba

#endif  // HARMAMBA_MODEL_ARRAY_IO_H_
