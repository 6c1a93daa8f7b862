#include "server/metrics_recorder.h"

namespace harmamba {

MetricsRecorder* NoopMetricsRecorder() {
  static MetricsRecorder* const recorder = new MetricsRecorder();
  return recorder;
}

}  // namespace harmamba
