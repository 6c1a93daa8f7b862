#include "tools/progress.h"

#include <unistd.h>

#include <iostream>
#include <utility>

#include "absl/strings/str_format.h"

namespace harmamba::cli {

bool IsTerminal(const std::ostream& err) {
  return &err == &std::cerr && isatty(STDERR_FILENO) == 1;
}

bool ShouldShowProgress(bool requested, const std::ostream& err) {
  return requested || IsTerminal(err);
}

ProgressReporter::ProgressReporter(std::ostream& err, std::string label,
                                   int64_t total, bool enabled, bool redraw,
                                   std::chrono::milliseconds interval)
    : err_(err),
      label_(std::move(label)),
      total_(total),
      enabled_(enabled),
      redraw_(redraw),
      interval_(interval),
      start_(Clock::now()),
      last_print_(start_) {}

void ProgressReporter::Update(int64_t done) {
  if (!enabled_ || finished_) return;
  const Clock::time_point now = Clock::now();
  const bool last = done >= total_;
  if (!last && printed_any_ && now - last_print_ < interval_) return;
  if (!last && !printed_any_ && now - start_ < interval_ && !redraw_) return;
  const double seconds = std::chrono::duration<double>(now - start_).count();
  const double percent = total_ > 0 ? 100.0 * done / total_ : 100.0;
  const std::string line = absl::StrFormat(
      "%s: %d/%d windows (%.0f%%), %.0f windows/s", label_, done, total_,
      percent, seconds > 0 ? done / seconds : 0.0);
  if (redraw_) {
    // Pad so that a shorter line fully covers the previous one.
    err_ << '\r' << absl::StrFormat("%-70s", line);
    if (last) err_ << '\n';
  } else {
    err_ << line << '\n';
  }
  err_.flush();
  printed_any_ = true;
  last_print_ = now;
  finished_ = last;
}

}  // namespace harmamba::cli
