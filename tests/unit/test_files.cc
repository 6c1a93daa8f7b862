#include "tests/unit/test_files.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>

#include "gtest/gtest.h"

namespace harmamba::testing {

void WriteFile(const std::string& path, const std::string& bytes) {
  const std::filesystem::path parent =
      std::filesystem::path(path).parent_path();
  if (!parent.empty()) std::filesystem::create_directories(parent);
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << path;
}

std::vector<float> RandomFloats(size_t count, uint32_t seed, float stddev) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, stddev);
  std::vector<float> values(count);
  for (float& v : values) v = dist(rng);
  return values;
}

std::string NpyImage(int major, const std::string& dict,
                     const std::string& data) {
  const size_t length_bytes = major == 1 ? 2 : 4;
  std::string header = dict;
  const size_t unpadded = 6 + 2 + length_bytes + header.size() + 1;
  header.append((64 - unpadded % 64) % 64, ' ');
  header.push_back('\n');
  std::string out = "\x93NUMPY";
  out.push_back(static_cast<char>(major));
  out.push_back('\0');
  for (size_t i = 0; i < length_bytes; ++i) {
    out.push_back(static_cast<char>((header.size() >> (8 * i)) & 0xff));
  }
  return out + header + data;
}

std::string ReadText(const std::string& path) {
  std::ifstream file(path);
  return std::string((std::istreambuf_iterator<char>(file)),
                     std::istreambuf_iterator<char>());
}

bool Shell(const std::string& command) {
  return std::system((command + " >/dev/null 2>&1").c_str()) == 0;
}

bool HaveOpenssl() { return Shell("command -v openssl"); }

bool WriteSelfSignedCertificate(const std::string& key_path,
                                const std::string& cert_path,
                                const std::string& dns_name) {
  return Shell(
      "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=harmamba "
      "-addext subjectAltName=DNS:" +
      dns_name + " -keyout " + key_path + " -out " + cert_path);
}

}  // namespace harmamba::testing
