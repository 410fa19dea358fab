// rbm/bench.hpp — measurement helpers of rbm_bench.
//
// defines: rbm::bench::Shape, parse_shapes, parse_precisions, Clock, clock_now, gemm_rate
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "rbm/rbm_bf16.hpp"

namespace rbm::bench {

struct Shape {
  size_t H, B;  ///< hidden units, global batch
};

/// "256x64,500x100" -> {{256, 64}, {500, 100}}; throws UsageError naming --shapes.
std::vector<Shape> parse_shapes(const std::string& s);
/// "fp32", "bf16", "fp32,bf16"; throws UsageError naming --precision.
std::vector<Precision> parse_precisions(const std::string& s);

/// wall: elapsed time; cpu: this thread's CPU time (CLOCK_THREAD_CPUTIME_ID), which
/// leaves out the time other processes hold the core on a shared, loaded machine.
enum class Clock { wall, cpu };
double clock_now(Clock c);

/// GEMM rate (flop/s) of CD-1's products for V x H weights and a batch of B columns
/// (the PER-RANK batch: the shapes a rank's step multiplies), measured for about
/// `seconds` on clock `c`: W'X, W H, W'V [H, B] and the statistics product
/// [V, 2B] x [2B, H] (10 V H B flops per repetition), in fp32 (OpenBLAS via Eigen)
/// or bf16 (oneDNN matmul, inputs already bf16, fp32 output: as in a step).
double gemm_rate(size_t V, size_t H, size_t B, double seconds, Precision prec = Precision::fp32,
                 Clock c = Clock::wall);

}  // namespace rbm::bench
