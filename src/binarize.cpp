// binarize.cpp — pixels to visible values (see rbm/binarize.hpp).
#include "rbm/binarize.hpp"

#include <vector>

#include "rbm/errors.hpp"

namespace rbm {

Binarize parse_binarize(const std::string& name) {
  if (name == "none") return Binarize::none;
  if (name == "threshold") return Binarize::threshold;
  if (name == "stochastic") return Binarize::stochastic;
  throw UsageError("--binarize " + name + ": expected none, threshold or stochastic");
}

std::string binarize_name(Binarize b) {
  switch (b) {
    case Binarize::threshold: return "threshold";
    case Binarize::stochastic: return "stochastic";
    case Binarize::none: return "none";
  }
  return "?";
}

std::string binarize_text(Binarize b) {
  switch (b) {
    case Binarize::threshold: return "threshold (pixel >= 128)";
    case Binarize::stochastic: return "stochastic (v ~ Bernoulli(pixel/255), seeded)";
    case Binarize::none: return "none (pixel/255)";
  }
  return "?";
}

Binarizer::Binarizer(Binarize mode, const CounterRng& rng) : mode_(mode), rng_(rng) {
  for (int x = 0; x < 256; ++x) level_[x] = static_cast<float>(x) / 255.0f;
}

void Binarizer::row(const uint8_t* px, size_t V, uint32_t sub, uint64_t step, uint64_t index,
                    float* x) const {
  switch (mode_) {
    case Binarize::none:
      for (size_t i = 0; i < V; ++i) x[i] = level_[px[i]];
      break;
    case Binarize::threshold:
      for (size_t i = 0; i < V; ++i) x[i] = px[i] >= 128 ? 1.0f : 0.0f;
      break;
    case Binarize::stochastic: {
      thread_local std::vector<float> u;
      u.resize(V);
      rng_.uniforms(Stream::binarize, sub, step, index, u.data(), V);
      for (size_t i = 0; i < V; ++i) x[i] = u[i] < level_[px[i]] ? 1.0f : 0.0f;
      break;
    }
  }
}

}  // namespace rbm
