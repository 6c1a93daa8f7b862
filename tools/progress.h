// Progress lines on stderr for long `harmamba` operations (predict, eval).
// stdout is never written, so machine-readable output stays clean.
//
// A ProgressReporter is used by one thread.
#ifndef HARMAMBA_TOOLS_PROGRESS_H_
#define HARMAMBA_TOOLS_PROGRESS_H_

#include <chrono>
#include <cstdint>
#include <ostream>
#include <string>

namespace harmamba::cli {

// Whether `err` is the process's std::cerr and file descriptor 2 is a
// terminal.
bool IsTerminal(const std::ostream& err);

// Whether to show progress: when asked with --progress, or when `err` is the
// process's std::cerr and file descriptor 2 is a terminal.
bool ShouldShowProgress(bool requested, const std::ostream& err);

class ProgressReporter {
 public:
  // Reports "<label>: done/total windows (p%), r windows/s" on `err`.
  // Disabled reporters print nothing. On a terminal (`redraw`) one line is
  // redrawn with '\r'; otherwise a full line is printed at most once per
  // `interval`, plus the final one.
  ProgressReporter(
      std::ostream& err, std::string label, int64_t total, bool enabled,
      bool redraw,
      std::chrono::milliseconds interval = std::chrono::milliseconds(500));

  // `done` windows are finished (non-decreasing). Prints when the interval has
  // passed since the last line, and always when done == total.
  void Update(int64_t done);

 private:
  using Clock = std::chrono::steady_clock;

  std::ostream& err_;
  const std::string label_;
  const int64_t total_;
  const bool enabled_;
  const bool redraw_;
  const std::chrono::milliseconds interval_;
  const Clock::time_point start_;
  Clock::time_point last_print_;
  bool printed_any_ = false;
  bool finished_ = false;
};

}  // namespace harmamba::cli

#endif  // HARMAMBA_TOOLS_PROGRESS_H_
