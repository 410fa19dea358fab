// rbm/bench.hpp — measurement helpers of rbm_bench.
//
// defines: rbm::bench::Shape, parse_shapes, gemm_rate
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace rbm::bench {

struct Shape {
  size_t H, B;  ///< hidden units, global batch
};

/// "256x64,500x100" -> {{256, 64}, {500, 100}}; throws UsageError naming --shapes.
std::vector<Shape> parse_shapes(const std::string& s);

/// GEMM rate (flop/s) of CD-1's products for V x H weights and batch B, measured for
/// about `seconds`: W'X, W H, W'V [H, B] and the statistics product [V, 2B] x [2B, H]
/// (10 V H B flops per repetition).
double gemm_rate(size_t V, size_t H, size_t B, double seconds);

}  // namespace rbm::bench
