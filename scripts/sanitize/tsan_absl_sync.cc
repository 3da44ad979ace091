// ThreadSanitizer support for the system's Abseil: Debian ships libabsl_synchronization built
// without TSan, so TSan does not see absl::Mutex order anything and reports every access it
// guards as a race. Preloaded into TSan-built processes
// (scripts/sanitize.sh), this library interposes their out-of-line entry points (the callers,
// ours and gRPC's, reach them through the PLT), calls the real ones (dlsym RTLD_NEXT) and tells
// TSan the order they establish: releasing a mutex happens before the next acquisition of it.
// Await, LockWhen and CondVar::Wait release and reacquire the mutex inside. Lock-order
// (deadlock) checks are not emulated; only data races are found. absl::Notification is not
// covered (our code does not use it; its HasBeenNotified is inline and cannot be interposed).
//
// In a process without TSan (a shell, Python) the weak __tsan_* references are null and nothing
// here runs: only absl code calls these entry points.
#include <dlfcn.h>

#include <cstdlib>
#include <cstring>

#include "absl/synchronization/mutex.h"

extern "C" {
void __tsan_acquire(void* addr) __attribute__((weak));
void __tsan_release(void* addr) __attribute__((weak));
}

namespace {

void Acquire(const void* addr) {
  if (__tsan_acquire != nullptr) __tsan_acquire(const_cast<void*>(addr));
}
void Release(const void* addr) {
  if (__tsan_release != nullptr) __tsan_release(const_cast<void*>(addr));
}

// The next definition of the function `ours` (a member function, non-virtual; this library
// defines it too): found by its mangled name, which dladdr reads from our own definition.
template <typename MemberFunction>
MemberFunction Next(MemberFunction ours) {
  void* address;
  static_assert(sizeof(ours) >= sizeof(address));
  std::memcpy(&address, &ours, sizeof address);  // Itanium ABI: a non-virtual one's entry point
  Dl_info info;
  void* next = nullptr;
  if (::dladdr(address, &info) != 0 && info.dli_sname != nullptr) {
    next = ::dlsym(RTLD_NEXT, info.dli_sname);
  }
  if (next == nullptr) std::abort();  // not the Abseil this was built against
  MemberFunction out{};
  std::memcpy(&out, &next, sizeof next);
  return out;
}

}  // namespace

namespace absl {
ABSL_NAMESPACE_BEGIN

#define QNET_REAL(member) static const auto real = Next(&member)

void Mutex::Lock() {
  QNET_REAL(Mutex::Lock);
  (this->*real)();
  Acquire(this);
}

bool Mutex::TryLock() {
  QNET_REAL(Mutex::TryLock);
  const bool locked = (this->*real)();
  if (locked) Acquire(this);
  return locked;
}

void Mutex::Unlock() {
  QNET_REAL(Mutex::Unlock);
  Release(this);
  (this->*real)();
}

void Mutex::ReaderLock() {
  QNET_REAL(Mutex::ReaderLock);
  (this->*real)();
  Acquire(this);
}

bool Mutex::ReaderTryLock() {
  QNET_REAL(Mutex::ReaderTryLock);
  const bool locked = (this->*real)();
  if (locked) Acquire(this);
  return locked;
}

void Mutex::ReaderUnlock() {
  QNET_REAL(Mutex::ReaderUnlock);
  Release(this);
  (this->*real)();
}

void Mutex::LockWhen(const Condition& cond) {
  QNET_REAL(Mutex::LockWhen);
  (this->*real)(cond);
  Acquire(this);
}

void Mutex::ReaderLockWhen(const Condition& cond) {
  QNET_REAL(Mutex::ReaderLockWhen);
  (this->*real)(cond);
  Acquire(this);
}

bool Mutex::LockWhenWithTimeout(const Condition& cond, Duration timeout) {
  QNET_REAL(Mutex::LockWhenWithTimeout);
  const bool met = (this->*real)(cond, timeout);
  Acquire(this);  // held whether or not the condition became true
  return met;
}

bool Mutex::LockWhenWithDeadline(const Condition& cond, Time deadline) {
  QNET_REAL(Mutex::LockWhenWithDeadline);
  const bool met = (this->*real)(cond, deadline);
  Acquire(this);
  return met;
}

bool Mutex::ReaderLockWhenWithTimeout(const Condition& cond, Duration timeout) {
  QNET_REAL(Mutex::ReaderLockWhenWithTimeout);
  const bool met = (this->*real)(cond, timeout);
  Acquire(this);
  return met;
}

bool Mutex::ReaderLockWhenWithDeadline(const Condition& cond, Time deadline) {
  QNET_REAL(Mutex::ReaderLockWhenWithDeadline);
  const bool met = (this->*real)(cond, deadline);
  Acquire(this);
  return met;
}

void Mutex::Await(const Condition& cond) {
  QNET_REAL(Mutex::Await);
  Release(this);
  (this->*real)(cond);
  Acquire(this);
}

bool Mutex::AwaitWithTimeout(const Condition& cond, Duration timeout) {
  QNET_REAL(Mutex::AwaitWithTimeout);
  Release(this);
  const bool met = (this->*real)(cond, timeout);
  Acquire(this);
  return met;
}

bool Mutex::AwaitWithDeadline(const Condition& cond, Time deadline) {
  QNET_REAL(Mutex::AwaitWithDeadline);
  Release(this);
  const bool met = (this->*real)(cond, deadline);
  Acquire(this);
  return met;
}

void CondVar::Wait(Mutex* mu) {
  QNET_REAL(CondVar::Wait);
  Release(mu);
  (this->*real)(mu);
  Acquire(mu);
}

bool CondVar::WaitWithTimeout(Mutex* mu, Duration timeout) {
  QNET_REAL(CondVar::WaitWithTimeout);
  Release(mu);
  const bool timed_out = (this->*real)(mu, timeout);
  Acquire(mu);
  return timed_out;
}

bool CondVar::WaitWithDeadline(Mutex* mu, Time deadline) {
  QNET_REAL(CondVar::WaitWithDeadline);
  Release(mu);
  const bool timed_out = (this->*real)(mu, deadline);
  Acquire(mu);
  return timed_out;
}

#undef QNET_REAL

ABSL_NAMESPACE_END
}  // namespace absl
