// Scheduling lanes of the batcher (design.md §4).
#ifndef HARMAMBA_SERVER_LANE_H_
#define HARMAMBA_SERVER_LANE_H_

#include "absl/strings/string_view.h"

namespace harmamba {

// Interactive work (Classify, StreamClassify) is latency-sensitive; bulk work
// (ClassifyBatch) is throughput-oriented. The batcher serves interactive
// windows first but reserves a share of each batch for waiting bulk windows,
// so neither lane starves (see BatcherOptions::min_bulk_fraction).
enum class Lane { kInteractive = 0, kBulk = 1 };

inline constexpr int kNumLanes = 2;

inline absl::string_view LaneName(Lane lane) {
  return lane == Lane::kInteractive ? "interactive" : "bulk";
}

}  // namespace harmamba

#endif  // HARMAMBA_SERVER_LANE_H_
