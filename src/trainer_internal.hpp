// trainer_internal.hpp — what the trainer's sources share (not a public header).
#pragma once

#include <mpi.h>

#include <cmath>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <string>

#include "rbm/errors.hpp"

namespace rbm::trainer_detail {

inline double now() { return MPI_Wtime(); }

// Counters appended to the gradient buffer (summed by the same reduction).
enum Counter { kReconSq = 0, kSamples = 1, kStop = 2, kCounters = 3 };

inline std::string fmt_fixed(double v, int width, int precision, bool sign = false) {
  char buf[64];
  std::snprintf(buf, sizeof buf, sign ? "%+*.*f" : "%*.*f", width, precision, v);
  return buf;
}

inline std::string seconds_text(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  long t = std::lround(s);
  if (t >= 3600) return fmt(t / 3600, "h", (t % 3600) / 60, "m");
  if (t >= 60) return fmt(t / 60, "m", t % 60, "s");
  return fmt(t, "s");
}

}  // namespace rbm::trainer_detail
