// Time as the serving layer sees it, injectable so that tests control it.
//
// Debian's Abseil (20220623) has no absl::Clock; this is the same shape plus a
// condition wait, because a component that waits "until work arrives or a
// deadline passes" must wait on the clock it reads, or a fake clock could not
// wake it.
#ifndef HARMAMBA_SERVER_CLOCK_H_
#define HARMAMBA_SERVER_CLOCK_H_

#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace harmamba {

// Thread-safe: every method may be called from any thread.
class Clock {
 public:
  virtual ~Clock() = default;

  virtual absl::Time Now() const = 0;

  // Blocks the calling thread, which holds `*mu`, until `*cv` is signalled or
  // Now() >= `deadline`; `*mu` is released while blocked and held again on
  // return. May return spuriously: callers re-check their condition in a loop.
  // Returns true iff Now() >= deadline on return.
  virtual bool WaitWithDeadline(absl::Mutex* mu, absl::CondVar* cv,
                                absl::Time deadline) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) = 0;

  // The process's real clock (absl::Now()). Never destroyed.
  static Clock* Real();
};

// A clock that moves only when told to. Waiters are woken when Advance() or
// SetTime() reaches their deadline (promptly; in a narrow race with a waiter
// that is just going to sleep, within 1 ms of real time).
class FakeClock : public Clock {
 public:
  // Starts at an arbitrary fixed instant (not the Unix epoch, so that
  // "time - duration" never underflows in tests).
  FakeClock();
  explicit FakeClock(absl::Time start);

  absl::Time Now() const override;
  bool WaitWithDeadline(absl::Mutex* mu, absl::CondVar* cv,
                        absl::Time deadline) const override
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);

  // Moves time forward by `d` (>= 0) and wakes waiters.
  void Advance(absl::Duration d);
  // Sets the time (never backwards) and wakes waiters.
  void SetTime(absl::Time t);

 private:
  void WakeWaiters() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  mutable absl::Mutex mu_;
  absl::Time now_ ABSL_GUARDED_BY(mu_);
  // Condition variables of threads blocked in WaitWithDeadline.
  mutable std::vector<absl::CondVar*> waiters_ ABSL_GUARDED_BY(mu_);
};

}  // namespace harmamba

#endif  // HARMAMBA_SERVER_CLOCK_H_
