#include "model/config.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "model/status_macros.h"
#include "nlohmann/json.hpp"

namespace harmamba {
namespace {

using nlohmann::json;

// Bounds every integer hyper-parameter and the token count, so that shape
// arithmetic (int and int64) never overflows whatever a file claims.
constexpr int kMaxDimension = 1 << 20;

// The keys every file must carry, without the "harmamba." prefix.
constexpr const char* kRequiredKeys[] = {
    "name",   "version", "window_length",  "channels", "patch",
    "stride", "d_model", "depth",          "d_state",  "d_conv",
    "expand", "classes", "sample_rate_hz", "mean",     "std"};

bool IsKnownKey(absl::string_view short_key) {
  for (const char* key : kRequiredKeys) {
    if (short_key == key) return true;
  }
  return false;
}

std::string FullKey(absl::string_view short_key) {
  return absl::StrCat(kMetadataPrefix, short_key);
}

// At most 80 characters of `text`, for error messages.
std::string Excerpt(absl::string_view text) {
  constexpr size_t kMax = 80;
  if (text.size() <= kMax) return std::string(text);
  return absl::StrCat(text.substr(0, kMax), "...");
}

// Never throws: invalid UTF-8 in strings becomes U+FFFD.
std::string Dump(const json& value) {
  return value.dump(-1, ' ', false, json::error_handler_t::replace);
}

absl::Status TypeError(absl::string_view key, absl::string_view expected,
                       const json& value) {
  return absl::InvalidArgumentError(absl::StrCat(
      key, ": expected ", expected, ", got ", Excerpt(Dump(value))));
}

absl::Status ReadInt(absl::string_view key, const json& value, int* out) {
  if (!value.is_number_integer()) return TypeError(key, "an integer", value);
  // is_number_integer() covers signed and unsigned storage.
  if (value.is_number_unsigned()) {
    const auto v = value.get<uint64_t>();
    if (v > static_cast<uint64_t>(std::numeric_limits<int>::max())) {
      return TypeError(key, "an integer that fits in 32 bits", value);
    }
    *out = static_cast<int>(v);
    return absl::OkStatus();
  }
  const auto v = value.get<int64_t>();
  if (v < std::numeric_limits<int>::min() ||
      v > std::numeric_limits<int>::max()) {
    return TypeError(key, "an integer that fits in 32 bits", value);
  }
  *out = static_cast<int>(v);
  return absl::OkStatus();
}

absl::Status ReadDouble(absl::string_view key, const json& value, double* out) {
  if (!value.is_number()) return TypeError(key, "a number", value);
  *out = value.get<double>();
  return absl::OkStatus();
}

absl::Status ReadString(absl::string_view key, const json& value,
                        std::string* out) {
  if (!value.is_string()) return TypeError(key, "a string", value);
  *out = value.get<std::string>();
  return absl::OkStatus();
}

absl::Status ReadStringList(absl::string_view key, const json& value,
                            std::vector<std::string>* out) {
  if (!value.is_array()) return TypeError(key, "an array of strings", value);
  std::vector<std::string> result;
  for (const json& item : value) {
    if (!item.is_string()) return TypeError(key, "an array of strings", value);
    result.push_back(item.get<std::string>());
  }
  *out = std::move(result);
  return absl::OkStatus();
}

absl::Status ReadFloatList(absl::string_view key, const json& value,
                           std::vector<float>* out) {
  if (!value.is_array()) return TypeError(key, "an array of numbers", value);
  std::vector<float> result;
  for (const json& item : value) {
    if (!item.is_number()) return TypeError(key, "an array of numbers", value);
    result.push_back(static_cast<float>(item.get<double>()));
  }
  *out = std::move(result);
  return absl::OkStatus();
}

// Sets the field called `short_key` from a JSON value; `key` is the name used
// in messages. Returns false in `*known` for keys that are not fields.
absl::Status SetField(absl::string_view short_key, absl::string_view key,
                      const json& value, ModelConfig* c, bool* known) {
  *known = true;
  if (short_key == "name") return ReadString(key, value, &c->name);
  if (short_key == "version") return ReadString(key, value, &c->version);
  if (short_key == "window_length") {
    return ReadInt(key, value, &c->window_length);
  }
  if (short_key == "channels") return ReadStringList(key, value, &c->channels);
  if (short_key == "sample_rate_hz") {
    return ReadDouble(key, value, &c->sample_rate_hz);
  }
  if (short_key == "patch") return ReadInt(key, value, &c->patch);
  if (short_key == "stride") return ReadInt(key, value, &c->stride);
  if (short_key == "d_model") return ReadInt(key, value, &c->d_model);
  if (short_key == "depth") return ReadInt(key, value, &c->depth);
  if (short_key == "d_state") return ReadInt(key, value, &c->d_state);
  if (short_key == "d_conv") return ReadInt(key, value, &c->d_conv);
  if (short_key == "expand") return ReadInt(key, value, &c->expand);
  if (short_key == "classes") return ReadStringList(key, value, &c->classes);
  if (short_key == "mean") return ReadFloatList(key, value, &c->mean);
  if (short_key == "std") return ReadFloatList(key, value, &c->std);
  *known = false;
  return absl::OkStatus();
}

absl::Status CheckRange(absl::string_view short_key, int value, int min,
                        int max) {
  if (value < min || value > max) {
    return absl::InvalidArgumentError(
        absl::StrCat(FullKey(short_key), ": expected an integer in [", min,
                     ", ", max, "], got ", value));
  }
  return absl::OkStatus();
}

absl::Status CheckNames(absl::string_view short_key,
                        const std::vector<std::string>& names) {
  if (names.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(FullKey(short_key), ": expected at least one name"));
  }
  std::set<std::string> seen;
  for (const std::string& name : names) {
    if (name.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(FullKey(short_key), ": names must not be empty"));
    }
    if (!seen.insert(name).second) {
      return absl::InvalidArgumentError(
          absl::StrCat(FullKey(short_key), ": duplicate name \"", name, "\""));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckPerChannel(absl::string_view short_key,
                             const std::vector<float>& values, size_t channels,
                             bool positive) {
  if (values.size() != channels) {
    return absl::InvalidArgumentError(
        absl::StrCat(FullKey(short_key), ": expected one value per channel (",
                     channels, "), got ", values.size()));
  }
  for (size_t i = 0; i < values.size(); ++i) {
    const float v = values[i];
    if (!std::isfinite(v) || (positive && !(v > 0.0f))) {
      return absl::InvalidArgumentError(
          absl::StrCat(FullKey(short_key), "[", i, "]: expected a finite",
                       positive ? " positive" : "", " number, got ", v));
    }
  }
  return absl::OkStatus();
}

// The shortest decimal that reads back (decimal -> double -> float, the path
// of our parser and of Python's json + numpy) as exactly `value`, as a double,
// so the metadata stays readable ("0.8", not "0.800000011920929").
double ShortestRoundTrip(float value) {
  char buffer[32];
  for (int precision = 1; precision < 9; ++precision) {
    std::snprintf(buffer, sizeof(buffer), "%.*g", precision, value);
    const double parsed = std::strtod(buffer, nullptr);
    if (static_cast<float>(parsed) == value) return parsed;
  }
  // 9 significant digits always round-trip a float.
  std::snprintf(buffer, sizeof(buffer), "%.9g", value);
  return std::strtod(buffer, nullptr);
}

json FloatArray(const std::vector<float>& values) {
  json array = json::array();
  for (float v : values) array.push_back(ShortestRoundTrip(v));
  return array;
}

}  // namespace

absl::Status ModelConfig::Validate() const {
  if (name.empty()) {
    return absl::InvalidArgumentError("harmamba.name: must not be empty");
  }
  if (version.empty()) {
    return absl::InvalidArgumentError("harmamba.version: must not be empty");
  }
  RETURN_IF_ERROR(CheckRange("window_length", window_length, 1, kMaxDimension));
  RETURN_IF_ERROR(CheckNames("channels", channels));
  RETURN_IF_ERROR(CheckRange("channels", num_channels(), 1, kMaxDimension));
  if (!std::isfinite(sample_rate_hz) || !(sample_rate_hz > 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("harmamba.sample_rate_hz: expected a finite positive "
                     "number, got ",
                     sample_rate_hz));
  }
  RETURN_IF_ERROR(CheckRange("patch", patch, 1, window_length));
  RETURN_IF_ERROR(CheckRange("stride", stride, 1, kMaxDimension));
  const int64_t tokens =
      static_cast<int64_t>(num_patches()) * num_channels() + 1;
  if (tokens > kMaxDimension) {
    return absl::InvalidArgumentError(absl::StrCat(
        "harmamba.window_length: ", tokens, " tokens per window, at most ",
        kMaxDimension, " supported"));
  }
  RETURN_IF_ERROR(CheckRange("d_model", d_model, 1, kMaxDimension));
  RETURN_IF_ERROR(CheckRange("depth", depth, 2, kMaxDimension));
  if (depth % 2 != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "harmamba.depth: expected an even number (layers form bidirectional "
        "pairs), got ",
        depth));
  }
  RETURN_IF_ERROR(CheckRange("d_state", d_state, 1, kMaxDimension));
  RETURN_IF_ERROR(CheckRange("d_conv", d_conv, 1, kMaxDimension));
  RETURN_IF_ERROR(CheckRange("expand", expand, 1, kMaxDimension / d_model));
  RETURN_IF_ERROR(CheckNames("classes", classes));
  RETURN_IF_ERROR(CheckRange("classes", num_classes(), 1, kMaxDimension));
  RETURN_IF_ERROR(CheckPerChannel("mean", mean, channels.size(), false));
  RETURN_IF_ERROR(CheckPerChannel("std", std, channels.size(), true));
  return absl::OkStatus();
}

absl::StatusOr<ModelConfig> ConfigFromMetadata(
    const std::map<std::string, std::string>& metadata) {
  for (const char* short_key : kRequiredKeys) {
    if (metadata.count(FullKey(short_key)) == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("missing metadata key ", FullKey(short_key)));
    }
  }
  ModelConfig config;
  for (const auto& [key, text] : metadata) {
    const bool harmamba_key = absl::StartsWith(key, kMetadataPrefix);
    const absl::string_view short_key = absl::string_view(key).substr(
        harmamba_key ? sizeof(kMetadataPrefix) - 1 : 0);
    if (!harmamba_key || !IsKnownKey(short_key)) {
      config.extra[key] = text;
      continue;
    }
    json value;
    if (short_key == "name" || short_key == "version") {
      value = text;  // plain strings, not JSON text
    } else {
      value = json::parse(text, nullptr, /*allow_exceptions=*/false);
      if (value.is_discarded()) {
        return absl::InvalidArgumentError(absl::StrCat(
            key, ": expected JSON text, got \"", Excerpt(text), "\""));
      }
    }
    bool known;
    RETURN_IF_ERROR(SetField(short_key, key, value, &config, &known));
  }
  RETURN_IF_ERROR(config.Validate());
  return config;
}

std::map<std::string, std::string> ConfigToMetadata(const ModelConfig& c) {
  std::map<std::string, std::string> metadata = c.extra;
  auto set = [&](absl::string_view short_key, const json& value) {
    metadata[FullKey(short_key)] = Dump(value);
  };
  metadata[FullKey("name")] = c.name;
  metadata[FullKey("version")] = c.version;
  set("window_length", c.window_length);
  set("channels", c.channels);
  set("sample_rate_hz", c.sample_rate_hz);
  set("patch", c.patch);
  set("stride", c.stride);
  set("d_model", c.d_model);
  set("depth", c.depth);
  set("d_state", c.d_state);
  set("d_conv", c.d_conv);
  set("expand", c.expand);
  set("classes", c.classes);
  set("mean", FloatArray(c.mean));
  set("std", FloatArray(c.std));
  return metadata;
}

absl::StatusOr<ModelConfig> ConfigFromJson(const std::string& json_text) {
  const json root = json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded()) {
    return absl::InvalidArgumentError("model config: bad JSON");
  }
  if (!root.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "model config: expected a JSON object, got ", Excerpt(Dump(root))));
  }
  ModelConfig config;
  bool has_mean = false, has_std = false;
  std::set<std::string> seen;
  for (const auto& [key, value] : root.items()) {
    absl::string_view short_key = key;
    if (absl::StartsWith(short_key, kMetadataPrefix)) {
      short_key.remove_prefix(sizeof(kMetadataPrefix) - 1);
    }
    if (!seen.insert(std::string(short_key)).second) {
      return absl::InvalidArgumentError(
          absl::StrCat(key, ": given twice (with and without prefix)"));
    }
    bool known;
    RETURN_IF_ERROR(SetField(short_key, key, value, &config, &known));
    if (!known) {
      return absl::InvalidArgumentError(
          absl::StrCat(key, ": unknown model config key"));
    }
    has_mean |= short_key == "mean";
    has_std |= short_key == "std";
  }
  for (const char* required : {"channels", "classes"}) {
    if (seen.count(required) == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("model config: missing required key ", required));
    }
  }
  if (!has_mean) config.mean.assign(config.channels.size(), 0.0f);
  if (!has_std) config.std.assign(config.channels.size(), 1.0f);
  RETURN_IF_ERROR(config.Validate());
  return config;
}

}  // namespace harmamba
