// rbm/binarize.hpp — how uint8 pixels become visible values: ONE convention for the
// trainer and every rbm_eval subcommand.
//
// defines: rbm::Binarize, parse_binarize, binarize_name, binarize_text, rbm::Binarizer
//
// With level(x) = x / 255 rounded to float:
//   none        v = level(x)                      grey values in [0, 1]
//   threshold   v = 1 if x >= 128 else 0
//   stochastic  v = 1 if u < level(x) else 0,     u = CounterRng(seed).uniforms(
//                                                   Stream::binarize, sub, step, index)[i]
// u is a multiple of 2^-24 in [0, 1), so P(v = 1) = level(x) up to 2^-24, and
// E[v] = level(x) for none and stochastic alike. `index` is the image's GLOBAL id, so
// the draws do not depend on the rank count. The trainer draws afresh every time an
// image is used (sub 0, step = global step); rbm_eval once per image and split
// (sub = split_sub(split), step 0).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "rbm/rng.hpp"

namespace rbm {

enum class Binarize { none, threshold, stochastic };

Binarize parse_binarize(const std::string& name);  ///< throws UsageError naming --binarize
std::string binarize_name(Binarize b);             ///< "none" / "threshold" / "stochastic"
std::string binarize_text(Binarize b);             ///< e.g. "threshold (pixel >= 128)"

class Binarizer {
 public:
  Binarizer(Binarize mode, const CounterRng& rng);
  Binarize mode() const { return mode_; }

  /// x[0..V) = visible values of the pixels px[0..V) of image `index` (see above).
  void row(const uint8_t* px, size_t V, uint32_t sub, uint64_t step, uint64_t index,
           float* x) const;

  /// Expected visible value of pixel value x: level(x) for none and stochastic,
  /// [x >= 128] for threshold (used for the pixel means of the initial biases).
  float mean(uint8_t x) const { return mode_ == Binarize::threshold ? (x >= 128) : level_[x]; }

 private:
  Binarize mode_;
  CounterRng rng_;
  float level_[256];  // x / 255
};

}  // namespace rbm
