// rbm/rng.hpp — counter-based random numbers (Random123 Philox4x32-10).
//
// defines: rbm::Stream, rbm::CounterRng
//
// Every random draw is a pure function of (seed, stream, sub, step, index, unit):
//   key     = seed (64 bits)
//   counter = { unit / 4, index (low 32), step (low 32),
//               stream << 24 | sub << 16 | (step >> 32) & 0xffff }
// and each Philox block gives the uniforms of units 4j .. 4j+3. `index` is a GLOBAL
// sample or chain index and `step` the global training step, so the numbers do not
// depend on how many ranks share the work or how a run was split by restarts.
#pragma once

#include <Random123/philox.h>

#include <cstddef>
#include <cstdint>

namespace rbm {

enum class Stream : uint32_t {
  hidden = 1,       ///< h ~ p(h|v) during CD/PCD Gibbs steps
  visible = 2,      ///< v ~ p(v|h) during CD/PCD Gibbs steps
  chain_init = 3,   ///< initial PCD chain states
  weight_init = 4,  ///< N(0, sigma^2) initial weights
  shuffle = 5,      ///< per-epoch shuffle of a rank's rows
  binarize = 6,     ///< --binarize stochastic
  eval = 7,         ///< rbm_eval (AIS, samples)
  // Parallel tempering (pt.hpp): sub = sweep t (1..k) for pt_hidden / pt_visible, index =
  // r * Cg + global chain id for replica r of a chain; pt_swap: sub 0, index = global
  // chain id, unit = pair r (the swap of temperatures r and r + 1).
  pt_hidden = 8,    ///< h ~ p_beta(h|v) of the tempered replicas
  pt_visible = 9,   ///< v ~ p_beta(v|h) of the tempered replicas
  pt_swap = 10,     ///< Metropolis uniforms of the replica exchanges
};

class CounterRng {
 public:
  explicit CounterRng(uint64_t seed = 0) : seed_(seed) {}
  uint64_t seed() const { return seed_; }

  /// Fills out[0..n) with uniforms in [0, 1) for units 0..n-1 of (stream, sub, step, index).
  void uniforms(Stream s, uint32_t sub, uint64_t step, uint64_t index, float* out,
                size_t n) const {
    r123::Philox4x32 gen;
    r123::Philox4x32::key_type key = {{static_cast<uint32_t>(seed_),
                                       static_cast<uint32_t>(seed_ >> 32)}};
    r123::Philox4x32::ctr_type ctr = {{0, static_cast<uint32_t>(index),
                                       static_cast<uint32_t>(step), hi_word(s, sub, step)}};
    size_t j = 0;
    for (; j + 4 <= n; j += 4) {
      ctr[0] = static_cast<uint32_t>(j / 4);
      auto r = gen(ctr, key);
      for (int q = 0; q < 4; ++q) out[j + q] = to_unit(r[q]);
    }
    if (j < n) {
      ctr[0] = static_cast<uint32_t>(j / 4);
      auto r = gen(ctr, key);
      for (int q = 0; j + q < n; ++q) out[j + q] = to_unit(r[q]);
    }
  }

  /// Four raw 32-bit words for block `block` of (stream, sub, step, index).
  r123::Philox4x32::ctr_type bits(Stream s, uint32_t sub, uint64_t step, uint64_t index,
                                  uint32_t block) const {
    r123::Philox4x32 gen;
    r123::Philox4x32::key_type key = {{static_cast<uint32_t>(seed_),
                                       static_cast<uint32_t>(seed_ >> 32)}};
    r123::Philox4x32::ctr_type ctr = {{block, static_cast<uint32_t>(index),
                                       static_cast<uint32_t>(step), hi_word(s, sub, step)}};
    return gen(ctr, key);
  }

  /// 24 random bits -> float in [0, 1): exact, and u < p is Bernoulli(p) for p in [0, 1].
  static float to_unit(uint32_t x) { return static_cast<float>(x >> 8) * 0x1.0p-24f; }

 private:
  static uint32_t hi_word(Stream s, uint32_t sub, uint64_t step) {
    return static_cast<uint32_t>(s) << 24 | (sub & 0xffu) << 16 |
           static_cast<uint32_t>((step >> 32) & 0xffffu);
  }
  uint64_t seed_;
};

}  // namespace rbm
