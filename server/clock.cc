#include "server/clock.h"

#include <algorithm>

namespace harmamba {
namespace {

class RealClock final : public Clock {
 public:
  absl::Time Now() const override { return absl::Now(); }
  bool WaitWithDeadline(absl::Mutex* mu, absl::CondVar* cv,
                        absl::Time deadline) const override
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    if (deadline == absl::InfiniteFuture()) {
      cv->Wait(mu);
      return false;
    }
    cv->WaitWithDeadline(mu, deadline);
    return absl::Now() >= deadline;
  }
};

}  // namespace

Clock* Clock::Real() {
  static RealClock* const clock = new RealClock();
  return clock;
}

FakeClock::FakeClock() : FakeClock(absl::FromUnixSeconds(1700000000)) {}

FakeClock::FakeClock(absl::Time start) : now_(start) {}

absl::Time FakeClock::Now() const {
  absl::MutexLock lock(&mu_);
  return now_;
}

bool FakeClock::WaitWithDeadline(absl::Mutex* mu, absl::CondVar* cv,
                                 absl::Time deadline) const {
  {
    absl::MutexLock lock(&mu_);
    if (now_ >= deadline) return true;
    waiters_.push_back(cv);
  }
  // Advance() signals `cv` without holding `*mu`, so a signal sent between the
  // registration above and the wait below would be lost; the short real-time
  // bound turns that race into a delay instead of a hang.
  cv->WaitWithTimeout(mu, absl::Milliseconds(1));
  absl::MutexLock lock(&mu_);
  waiters_.erase(std::find(waiters_.begin(), waiters_.end(), cv));
  return now_ >= deadline;
}

void FakeClock::Advance(absl::Duration d) {
  absl::MutexLock lock(&mu_);
  if (d > absl::ZeroDuration()) now_ += d;
  WakeWaiters();
}

void FakeClock::SetTime(absl::Time t) {
  absl::MutexLock lock(&mu_);
  now_ = std::max(now_, t);
  WakeWaiters();
}

void FakeClock::WakeWaiters() const {
  // Signalling under mu_ keeps every registered CondVar alive: a waiter
  // unregisters (under mu_) before its WaitWithDeadline returns.
  for (absl::CondVar* cv : waiters_) cv->SignalAll();
}

}  // namespace harmamba
