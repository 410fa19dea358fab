// rbm/prof.hpp — per-phase timers of a training step, for rbm_bench.
//
// defines: rbm::prof::Phase, enabled, enable, now, add, times, reset, Scope
//
// Off by default: every Scope then costs one predictable branch. rbm_bench turns it
// on and reads, per rank, the seconds spent in each phase of its steps:
//   gemm    the matrix products (OpenBLAS sgemm via Eigen, or oneDNN bf16 matmul)
//   cd      the whole CD statistics computation (element-wise = cd - gemm)
//   update  the node's fused reduction + update (sum of the slots, momentum, theta,
//           and the bf16 copy of W), this rank's segment
//   wait    waiting in the node barriers (for the slowest rank) and across nodes
// Timers are per thread (the training step runs on one thread per rank).
#pragma once

#include <time.h>

namespace rbm::prof {

enum Phase { gemm = 0, cd = 1, update = 2, wait = 3, kPhases = 4 };

inline bool& enabled() {
  static bool on = false;
  return on;
}
inline void enable(bool on) { enabled() = on; }

/// Phase clock: false (default) wall (CLOCK_MONOTONIC); true this thread's CPU time
/// (CLOCK_THREAD_CPUTIME_ID: leaves out time other processes hold the core; a system
/// call, ~0.2 us, so only for measurements).
inline bool& cpu_clock() {
  static bool on = false;
  return on;
}

/// Wall clock (CLOCK_MONOTONIC, vDSO: ~20 ns).
inline double now() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}
/// The phase clock.
inline double phase_now() {
  timespec ts;
  clock_gettime(cpu_clock() ? CLOCK_THREAD_CPUTIME_ID : CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

/// Accumulated seconds per phase on this thread.
inline double* times() {
  thread_local double t[kPhases] = {0, 0, 0, 0};
  return t;
}
inline void reset() {
  for (int k = 0; k < kPhases; ++k) times()[k] = 0;
}

/// Adds the scope's duration to `phase` when profiling is on.
class Scope {
 public:
  explicit Scope(Phase p) : p_(p), t0_(enabled() ? phase_now() : -1) {}
  ~Scope() {
    if (t0_ >= 0) times()[p_] += phase_now() - t0_;
  }
  Scope(const Scope&) = delete;
  Scope& operator=(const Scope&) = delete;

 private:
  Phase p_;
  double t0_;
};

}  // namespace rbm::prof
