// Test helpers for the file-format tests: writing fixture files, random
// float data, and .npy images built byte by byte from the format
// specification (not with model/array_io's writer).
#ifndef HARMAMBA_TESTS_UNIT_TEST_FILES_H_
#define HARMAMBA_TESTS_UNIT_TEST_FILES_H_

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace harmamba::testing {

// Writes `bytes` to `path` (truncating), creating its parent folders. A
// failed write fails the current test.
void WriteFile(const std::string& path, const std::string& bytes);

// `count` floats drawn from N(0, stddev^2) with a fixed seed.
std::vector<float> RandomFloats(size_t count, uint32_t seed,
                                float stddev = 1.0f);

// The bytes of `values` in memory order (little-endian on our machines).
template <typename T>
std::string RawBytes(const std::vector<T>& values) {
  std::string bytes(values.size() * sizeof(T), '\0');
  if (!values.empty()) std::memcpy(bytes.data(), values.data(), bytes.size());
  return bytes;
}

// A .npy image with version byte `major`: magic, version, little-endian
// header length (2 bytes for version 1, else 4 as in v2/v3), the dict padded
// with spaces to a 64-byte boundary and ended by '\n', then `data`.
std::string NpyImage(int major, const std::string& dict,
                     const std::string& data);

// The contents of `path`; "" when it cannot be read.
std::string ReadText(const std::string& path);

// Runs `command` through the shell with its output discarded; true when it
// exits 0.
bool Shell(const std::string& command);

// Whether the openssl command-line tool is installed.
bool HaveOpenssl();

// Writes a self-signed RSA certificate (1 day, CN harmamba, subjectAltName
// DNS:`dns_name`) and its private key as PEM files with openssl; false if
// openssl fails.
bool WriteSelfSignedCertificate(const std::string& key_path,
                                const std::string& cert_path,
                                const std::string& dns_name);

}  // namespace harmamba::testing

#endif  // HARMAMBA_TESTS_UNIT_TEST_FILES_H_
