#include "model/model_file.h"

#include <string>

#include "absl/strings/str_cat.h"

namespace harmamba {

std::vector<std::pair<std::string, std::vector<int64_t>>> ExpectedTensors(
    const ModelConfig& c) {
  const int64_t d = c.d_model, e = c.d_inner(), n = c.d_state,
                r = c.dt_rank();
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
