// Parses Prometheus' text exposition format into sample values, for tests.
#ifndef HARMAMBA_TESTS_TESTING_EXPOSITION_H_
#define HARMAMBA_TESTS_TESTING_EXPOSITION_H_

#include <cstdlib>
#include <map>
#include <sstream>
#include <string>

namespace harmamba::testing {

using Labels = std::map<std::string, std::string>;

// "name{a="1",b="2"}" with labels sorted by name (the canonical key).
inline std::string SeriesKey(const std::string& name, const Labels& labels) {
  std::string key = name;
  if (labels.empty()) return key;
  key += "{";
  bool first = true;
  for (const auto& [label, value] : labels) {
    if (!first) key += ",";
    first = false;
    key += label + "=\"" + value + "\"";
  }
  return key + "}";
}

// Every sample line, keyed by SeriesKey(). Comment lines are skipped. Label
// values must not contain '"' or ',' (true of our metrics).
inline std::map<std::string, double> ParseExposition(const std::string& text) {
  std::map<std::string, double> samples;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::string name;
    Labels labels;
    size_t pos = line.find_first_of("{ ");
    if (pos == std::string::npos) continue;
    name = line.substr(0, pos);
    if (line[pos] == '{') {
      const size_t close = line.find('}', pos);
      if (close == std::string::npos) continue;
      std::string body = line.substr(pos + 1, close - pos - 1);
      std::istringstream pairs(body);
      std::string pair;
      while (std::getline(pairs, pair, ',')) {
        const size_t eq = pair.find('=');
        if (eq == std::string::npos || pair.size() < eq + 3) continue;
        labels[pair.substr(0, eq)] = pair.substr(eq + 2, pair.size() - eq - 3);
      }
      pos = close + 1;
    }
    samples[SeriesKey(name, labels)] =
        std::strtod(line.c_str() + pos + 1, nullptr);
  }
  return samples;
}

// The value of a series, or -1 when it is absent.
inline double SampleValue(const std::map<std::string, double>& samples,
                          const std::string& name, const Labels& labels = {}) {
  auto it = samples.find(SeriesKey(name, labels));
  return it == samples.end() ? -1.0 : it->second;
}

}  // namespace harmamba::testing

#endif  // HARMAMBA_TESTS_TESTING_EXPOSITION_H_
