// eval_util.hpp — what the rbm_eval tests share: tiny models and datasets written as
// files, references in double computed without the code under test, running the
// program, and an independent PNG decoder.
#pragma once

#include <gtest/gtest.h>
#include <png.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "rbm/checkpoint.hpp"
#include "rbm/dataset.hpp"
#include "rbm/eval.hpp"
#include "rbm/h5.hpp"
#include "rbm/rng.hpp"
#include "test_util.hpp"

namespace evaltest {

using rbm::test::TempDir;

// ---- models and data ------------------------------------------------------------

// An RBM held as the floats the file stores; every reference computes in double from them.
struct Rbm {
  size_t V = 0, H = 0;
  std::vector<float> W, b, c;  // W row-major [V, H]
  double w(size_t i, size_t j) const { return W[i * H + j]; }
};

inline Rbm random_rbm(size_t V, size_t H, double w_sd, double b_mean, double b_sd, double c_sd,
               uint64_t seed) {
  std::mt19937_64 gen(seed);
  std::normal_distribution<double> n01(0.0, 1.0);
  Rbm m{V, H, std::vector<float>(V * H), std::vector<float>(V), std::vector<float>(H)};
  for (float& x : m.W) x = static_cast<float>(w_sd * n01(gen));
  for (float& x : m.b) x = static_cast<float>(b_mean + b_sd * n01(gen));
  for (float& x : m.c) x = static_cast<float>(c_sd * n01(gen));
  return m;
}

inline void write_model(const std::string& path, const Rbm& m) {
  rbm::ParamBuffer pb(m.V, m.H);
  std::copy(m.W.begin(), m.W.end(), pb.view.W.data());
  std::copy(m.b.begin(), m.b.end(), pb.view.b.data());
  std::copy(m.c.begin(), m.c.end(), pb.view.c.data());
  rbm::write_checkpoint(path, pb.view, nullptr);  // /model + format attributes only
}

struct Split {
  std::vector<uint8_t> images;  // [n, D]
  std::vector<uint8_t> labels;  // [n]
  size_t n() const { return labels.size(); }
};

inline void write_data(const std::string& path, size_t rows, size_t cols, const Split& train,
                const Split& test) {
  namespace h5 = rbm::h5;
  h5::Id f = h5::create_file(path);
  auto put = [&](const char* img, const char* lab, const Split& s) {
    h5::write_array<uint8_t>(f, img, s.images.data(), {s.n(), rows * cols}, {64, 4});
    h5::Id d = h5::open_object(f, img);
    h5::write_attr(d, "rows", int64_t(rows));
    h5::write_attr(d, "cols", int64_t(cols));
    h5::write_array<uint8_t>(f, lab, s.labels.data(), {s.n()});
  };
  put(rbm::schema::train_images, rbm::schema::train_labels, train);
  put(rbm::schema::test_images, rbm::schema::test_labels, test);
}

// n images of D grey pixels: pixel i of image k is bright with probability q_i
// (a smooth ramp over the pixels), grey levels spread over 0..255.
inline Split random_images(size_t n, size_t D, uint64_t seed) {
  std::mt19937_64 gen(seed);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  Split s{std::vector<uint8_t>(n * D), std::vector<uint8_t>(n)};
  for (size_t k = 0; k < n; ++k) {
    s.labels[k] = static_cast<uint8_t>(k % 10);
    for (size_t i = 0; i < D; ++i) {
      const double q = 0.1 + 0.6 * static_cast<double>(i % 28) / 27.0;
      s.images[k * D + i] = static_cast<uint8_t>(u(gen) < q ? 128 + 127 * u(gen) : 127 * u(gen));
    }
  }
  return s;
}

// ---- references in double -----------------------------------------------------------

inline double softplus(double x) { return x > 0 ? x + std::log1p(std::exp(-x)) : std::log1p(std::exp(x)); }
inline double sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }

struct Lse {  // streaming log-sum-exp
  double max = -INFINITY, sum = 0;
  void add(double x) {
    if (x > max) {
      sum = sum * std::exp(max - x) + 1.0;
      max = x;
    } else {
      sum += std::exp(x - max);
    }
  }
  double value() const { return max + std::log(sum); }
};

// log Z = log sum_{v,h} exp(b'v + c'h + v'W h), every joint state (V + H <= 20).
inline double log_z_joint(const Rbm& m) {
  Lse lse;
  for (uint64_t v = 0; v < (uint64_t{1} << m.V); ++v)
    for (uint64_t h = 0; h < (uint64_t{1} << m.H); ++h) {
      double e = 0;
      for (size_t i = 0; i < m.V; ++i)
        if (v >> i & 1) e += m.b[i];
      for (size_t j = 0; j < m.H; ++j)
        if (h >> j & 1) e += m.c[j];
      for (size_t i = 0; i < m.V; ++i)
        for (size_t j = 0; j < m.H; ++j)
          if ((v >> i & 1) && (h >> j & 1)) e += m.w(i, j);
      lse.add(e);
    }
  return lse.value();
}

// log p*(h) = c'h + sum_i softplus(b_i + (W h)_i) for every hidden state h (bit j of the
// index = h_j), visited in Gray-code order so that each step adds or removes one column
// of W. log Z = log sum_h p*(h).
inline std::vector<double> hidden_log_weights(const Rbm& m) {
  std::vector<double> out(uint64_t{1} << m.H);
  std::vector<double> a(m.b.begin(), m.b.end());  // b + W h
  uint64_t h = 0;
  double ch = 0;  // c'h
  auto term = [&] {
    double s = ch;
    for (double x : a) s += softplus(x);
    return s;
  };
  out[0] = term();
  for (uint64_t g = 1; g < out.size(); ++g) {
    const size_t j = static_cast<size_t>(__builtin_ctzll(g));
    const double sign = (h >> j & 1) ? -1.0 : 1.0;
    h ^= uint64_t{1} << j;
    for (size_t i = 0; i < m.V; ++i) a[i] += sign * m.w(i, j);
    ch += sign * m.c[j];
    out[h] = term();
  }
  return out;
}

inline double log_sum_exp(const std::vector<double>& x) {
  Lse lse;
  for (double v : x) lse.add(v);
  return lse.value();
}

// n exact samples of the RBM as 0/255 images: h from p(h) (enumerated), then v ~ p(v|h).
// The AIS tests train their base-rate model on these, as S&M do on a model's training data.
// `lw` = hidden_log_weights(m).
inline Split exact_samples(const Rbm& m, const std::vector<double>& lw, size_t n, uint64_t seed) {
  const double top = *std::max_element(lw.begin(), lw.end());
  std::vector<double> w(lw.size());
  for (size_t k = 0; k < w.size(); ++k) w[k] = std::exp(lw[k] - top);
  std::mt19937_64 gen(seed);
  std::discrete_distribution<uint64_t> pick(w.begin(), w.end());
  std::uniform_real_distribution<double> u(0.0, 1.0);
  Split s{std::vector<uint8_t>(n * m.V), std::vector<uint8_t>(n)};
  for (size_t k = 0; k < n; ++k) {
    const uint64_t h = pick(gen);
    s.labels[k] = static_cast<uint8_t>(k % 10);
    for (size_t i = 0; i < m.V; ++i) {
      double a = m.b[i];
      for (size_t j = 0; j < m.H; ++j)
        if (h >> j & 1) a += m.w(i, j);
      s.images[k * m.V + i] = u(gen) < sigmoid(a) ? 255 : 0;
    }
  }
  return s;
}

// F(v) = -b'v - sum_j softplus(c_j + sum_i W_ij v_i)
inline double free_energy(const Rbm& m, const std::vector<double>& v) {
  double f = 0;
  for (size_t i = 0; i < m.V; ++i) f -= m.b[i] * v[i];
  for (size_t j = 0; j < m.H; ++j) {
    double a = m.c[j];
    for (size_t i = 0; i < m.V; ++i) a += m.w(i, j) * v[i];
    f -= softplus(a);
  }
  return f;
}

inline std::vector<double> threshold(const Split& s, size_t k, size_t D) {
  std::vector<double> v(D);
  for (size_t i = 0; i < D; ++i) v[i] = s.images[k * D + i] >= 128 ? 1.0 : 0.0;
  return v;
}

// ---- running the program --------------------------------------------------------------

inline rbm::test::RunResult eval(const std::string& args, int np = 0) {
  const std::string cmd = (np ? rbm::test::mpirun(np) : std::string()) + rbm::test::bin("rbm_eval") +
                          " " + args;
  return rbm::test::run(cmd, 120);
}

// Value of "key" in the JSON object on the last line of stdout (NaN when absent).
inline double json(const rbm::test::RunResult& r, const std::string& key) {
  std::string last;
  std::istringstream in(r.out);
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) last = line;
  EXPECT_EQ(last.front(), '{') << r.out;
  const std::string k = "\"" + key + "\": ";
  const size_t at = last.find(k);
  if (at == std::string::npos) return NAN;
  return std::strtod(last.c_str() + at + k.size(), nullptr);
}

// Lines of `text` that start with `prefix`.
inline size_t count_lines(const std::string& text, const std::string& prefix = "") {
  size_t n = 0;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) n += line.rfind(prefix, 0) == 0;
  return n;
}

// u = 2^-24 (float unit roundoff); gamma(n) = n u / (1 - n u) bounds the relative error of
// an n-term float dot product or sum in any order (Higham, Accuracy and Stability, 3.1).
constexpr double kU = 0x1.0p-24;
inline double gamma(size_t n) { return static_cast<double>(n) * kU / (1.0 - static_cast<double>(n) * kU); }

// ---- PNG decoding with libpng, independent of the writer -------------------------------

struct Gray {
  size_t width = 0, height = 0;
  std::vector<uint8_t> px;
  int at(size_t y, size_t x) const { return px[y * width + x]; }
};

inline Gray read_png(const std::string& path) {
  png_image img;
  std::memset(&img, 0, sizeof img);
  img.version = PNG_IMAGE_VERSION;
  Gray g;
  if (!png_image_begin_read_from_file(&img, path.c_str())) {
    ADD_FAILURE() << path << ": " << img.message;
    return g;
  }
  img.format = PNG_FORMAT_GRAY;
  g.width = img.width;
  g.height = img.height;
  g.px.resize(PNG_IMAGE_SIZE(img));
  if (!png_image_finish_read(&img, nullptr, g.px.data(), 0, nullptr))
    ADD_FAILURE() << path << ": " << img.message;
  return g;
}

}  // namespace evaltest
