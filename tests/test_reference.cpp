// cd_gradient (and cd_gradient_naive) + sgd_momentum_update against an independent
// reference: tests/reference/cd_reference.py computes CD-1, CD-3 and PCD-2 gradients and
// three momentum updates of a 6x4 RBM in float64 numpy, from the uniforms our CounterRng
// drew (tests/reference/README). The fixture is committed; Python is needed only to
// regenerate it.
#include <gtest/gtest.h>
#include <hdf5.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "rbm/h5.hpp"
#include "rbm/rbm.hpp"
#include "rbm/rng.hpp"

using namespace rbm;

namespace {
const std::string kFixture = std::string(RBM_SOURCE_DIR) + "/tests/reference/cd_reference.h5";
constexpr uint32_t kChainSub = 128;  // src/rbm.cpp: PCD chains draw from sub 128 + t

struct Fixture {
  h5::Id f;
  size_t V = 0, H = 0, B = 0, C = 0, S = 0;
  uint64_t seed = 0;
  SgdHyper hyper;
  std::vector<float> W, b, c, X, chains0;    // [V,H], [V], [H], [S,B,V], [C,V]
  std::vector<int64_t> steps, sample_index, chain_index;

  Fixture() : f(h5::open_file(kFixture)) {
    auto n = [&](const char* a) { return static_cast<size_t>(h5::read_attr_int(f, a)); };
    V = n("V"), H = n("H"), B = n("B"), C = n("C");
    seed = static_cast<uint64_t>(h5::read_attr_int(f, "seed"));
    hyper.lr = static_cast<float>(h5::read_attr_double(f, "lr"));
    hyper.momentum = static_cast<float>(h5::read_attr_double(f, "momentum"));
    hyper.weight_decay = static_cast<float>(h5::read_attr_double(f, "weight_decay"));
    hyper.n_weights = V * H;
    W = floats("/init/W"), b = floats("/init/b"), c = floats("/init/c");
    X = floats("/X"), chains0 = floats("/chains0");
    steps = ints("/steps"), sample_index = ints("/sample_index"), chain_index = ints("/chain_index");
    S = steps.size();
  }
  std::vector<float> floats(const std::string& p) const { return h5::read_array<float>(f, p, kFixture); }
  std::vector<double> doubles(const std::string& p) const {
    return h5::read_array<double>(f, p, kFixture);
  }
  std::vector<int64_t> ints(const std::string& p) const {
    return h5::read_array<int64_t>(f, p, kFixture);
  }
};

struct Case {
  std::string name;
  int k;
  bool pcd;
};
const Case kCases[] = {{"cd1", 1, false}, {"cd3", 3, false}, {"pcd2", 2, true}};

// The uniform datasets cd_gradient's convention draws in one step (dump_inputs.cpp):
// {name, stream, sub, chains?}.
struct Draw {
  std::string name;
  Stream stream;
  uint32_t sub;
  bool chain;
};
std::vector<Draw> draws_of(const Case& cs) {
  std::vector<Draw> d{{"hidden_sub0", Stream::hidden, 0, false}};
  if (!cs.pcd) {
    for (uint32_t t = 1; t < static_cast<uint32_t>(cs.k); ++t) {
      d.push_back({"visible_sub" + std::to_string(t), Stream::visible, t, false});
      d.push_back({"hidden_sub" + std::to_string(t), Stream::hidden, t, false});
    }
  } else {
    for (uint32_t t = kChainSub + 1; t <= kChainSub + static_cast<uint32_t>(cs.k); ++t) {
      d.push_back({"hidden_sub" + std::to_string(t), Stream::hidden, t, true});
      d.push_back({"visible_sub" + std::to_string(t), Stream::visible, t, true});
    }
  }
  return d;
}
}  // namespace

// A change of the RNG (Philox key/counter layout, to_unit) fails here first, loudly,
// rather than as a gradient mismatch.
TEST(Reference, CounterRngReproducesTheStoredUniformsExactly) {
  Fixture fx;
  const CounterRng rng(fx.seed);
  size_t checked = 0;
  for (const Case& cs : kCases) {
    EXPECT_EQ(h5::read_attr_int(h5::open_object(fx.f, "/" + cs.name), "k"), cs.k);
    for (size_t s = 0; s < fx.S; ++s) {
      const std::string g = "/" + cs.name + "/step" + std::to_string(s);
      const std::vector<Draw> draws = draws_of(cs);
      H5G_info_t info;
      h5::Id grp(H5Gopen2(fx.f, g.c_str(), H5P_DEFAULT), H5Gclose);
      ASSERT_GE(H5Gget_info(grp, &info), 0) << g;
      EXPECT_EQ(info.nlinks, draws.size()) << g << ": not the draws of the documented convention";
      for (const Draw& d : draws) {
        std::vector<hsize_t> dims;
        const std::vector<float> stored = h5::read_array<float>(fx.f, g + "/" + d.name, kFixture, &dims);
        const size_t rows = d.chain ? fx.C : fx.B;
        const size_t units = d.stream == Stream::hidden ? fx.H : fx.V;
        ASSERT_EQ(dims, (std::vector<hsize_t>{rows, units})) << g << "/" << d.name;
        std::vector<float> u(units);
        for (size_t r = 0; r < rows; ++r) {
          const int64_t id = d.chain ? fx.chain_index[r] : fx.sample_index[r];
          rng.uniforms(d.stream, d.sub, static_cast<uint64_t>(fx.steps[s]), static_cast<uint64_t>(id),
                       u.data(), units);
          for (size_t i = 0; i < units; ++i, ++checked)
            ASSERT_EQ(u[i], stored[r * units + i]) << g << "/" << d.name << " row " << r << " unit " << i;
        }
      }
    }
  }
  EXPECT_GT(checked, 300u);
}

// Tolerances (float32 code vs the float64 reference, all |W| <= ~2, |x|, |h| <= 1):
//  * a pre-activation c_j + sum_i v_i W_ij has V + 1 = 7 terms; float32 summation errs by
//    at most 7 * 2^-24 * sum|terms| <= 7 * 6e-8 * 14 ~ 6e-6, the sigmoid (slope <= 1/4, its
//    own float error a few 2^-24) turns that into |dp| <= 1.6e-6 — a worst case; typical
//    errors are a few 1e-8.
//  * a gradient entry sums B + N <= 10 terms x p / B in [0, 1]: each term carries the
//    |dp| above plus ~2 roundings (2^-24 each), the sum 10 more: <= 1.6e-6 + 2e-6 ~ 4e-6
//    at step 0.
//  * the update m = mu m + lr (g - lambda W), theta += m rounds ~4 times per entry at
//    |theta| <= 2 (~1e-7 each) and passes lr * (gradient error) = 0.3 * 4e-6 on; over 3
//    steps, with the momentum (0.5) carrying earlier errors, the parameters drift by at
//    most ~3 * (1.2e-6 + 0.5e-6) ~ 5e-6, and the drift feeds back into p at the later
//    steps (sum_i |v_i| <= 6: |dp| <= 6 * 5e-6 / 4 ~ 8e-6), so gradients of step 2 may err
//    by ~1.5e-5 in this worst case.
//  kGradTol = kParamTol = 3e-5: twice the worst case (measured: <= 1e-7 for the gradients
//  and <= 1.4e-7 for the parameters). A flipped Bernoulli draw would change a binary
//  state by 1: a chain's visible unit moves db by 1/C = 0.33, a hidden or intermediate
//  visible unit moves the next probabilities by sigmoid' |W_ij| (|W_ij| up to 1.6), and
//  so the gradient by ~1e-2 or more: hundreds of times the tolerance.
//  * A sampled unit agrees between float and double only if u is not between the two
//    probabilities: |u - p| > |dp| ~ 1e-5 at worst. The reference records min |u - p| over
//    all sampled units; kMinMargin = 1e-4 (10x) is required of the fixture.
//  * recon_sq sums B V = 30 squares of (x - p) in [0, 1]: relative 1e-5.
constexpr double kGradTol = 3e-5, kParamTol = 3e-5, kMinMargin = 1e-4, kReconRel = 1e-5;

TEST(Reference, NoSampledUnitIsCloseEnoughToItsThresholdToFlip) {
  Fixture fx;
  EXPECT_GE(h5::read_attr_double(fx.f, "min_margin"), kMinMargin)
      << "a uniform lies within float32's error of its probability: regenerate the fixture "
         "with another seed in dump_inputs.cpp";
}

class ReferenceCase : public ::testing::TestWithParam<std::tuple<int, bool>> {};

TEST_P(ReferenceCase, GradientsAndThreeMomentumUpdatesMatchNumpyFloat64) {
  const Case& cs = kCases[std::get<0>(GetParam())];
  const bool naive = std::get<1>(GetParam());
  Fixture fx;
  const size_t V = fx.V, H = fx.H, B = fx.B, C = fx.C, n = Params::count(V, H);
  ParamBuffer theta(V, H), mom(V, H), grad(V, H);
  std::copy(fx.W.begin(), fx.W.end(), theta.view.W.data());  // both row-major [V, H]
  std::copy(fx.b.begin(), fx.b.end(), theta.view.b.data());
  std::copy(fx.c.begin(), fx.c.end(), theta.view.c.data());
  Matrix chains(V, C);  // [V, C]
  for (size_t m = 0; m < C; ++m)
    for (size_t i = 0; i < V; ++i) chains(i, m) = fx.chains0[m * V + i];
  std::vector<uint64_t> sidx(fx.sample_index.begin(), fx.sample_index.end());
  std::vector<uint64_t> cidx(fx.chain_index.begin(), fx.chain_index.end());
  const std::string e = "/" + cs.name + "/expected/";
  const auto gW = fx.doubles(e + "grad_W"), gb = fx.doubles(e + "grad_b"), gc = fx.doubles(e + "grad_c");
  const auto pW = fx.doubles(e + "W"), pb = fx.doubles(e + "b"), pc = fx.doubles(e + "c");
  const auto recon = fx.doubles(e + "recon_sq");
  const auto ch = cs.pcd ? fx.doubles(e + "chains") : std::vector<double>{};
  const CounterRng rng(fx.seed);
  CdWorkspace ws;
  double max_grad = 0, max_param = 0;
  for (size_t s = 0; s < fx.S; ++s) {
    Matrix X(V, B);  // [V, B]
    for (size_t m = 0; m < B; ++m)
      for (size_t i = 0; i < V; ++i) X(i, m) = fx.X[(s * B + m) * V + i];
    const CdConfig cfg{cs.k, cs.pcd, static_cast<uint64_t>(fx.steps[s]), B, C, true};
    const CdCounters cnt =
        naive ? cd_gradient_naive(theta.view, cfg, X, sidx.data(), &chains, cidx.data(), rng, grad.view)
              : cd_gradient(theta.view, cfg, X, sidx.data(), &chains, cidx.data(), rng, ws, grad.view);
    // Expected values in the layout [W | b | c].
    std::vector<double> g_ref(n), p_ref(n);
    for (size_t k = 0; k < V * H; ++k) g_ref[k] = gW[s * V * H + k], p_ref[k] = pW[s * V * H + k];
    for (size_t i = 0; i < V; ++i) g_ref[V * H + i] = gb[s * V + i], p_ref[V * H + i] = pb[s * V + i];
    for (size_t j = 0; j < H; ++j)
      g_ref[V * H + V + j] = gc[s * H + j], p_ref[V * H + V + j] = pc[s * H + j];
    for (size_t k = 0; k < n; ++k) {
      const double d = std::abs(grad.data[k] - g_ref[k]);
      max_grad = std::max(max_grad, d);
      EXPECT_LE(d, kGradTol) << cs.name << " step " << s << " gradient entry " << k << ": "
                             << grad.data[k] << " vs " << g_ref[k];
    }
    EXPECT_NEAR(cnt.recon_sq, recon[s], kReconRel * recon[s]) << cs.name << " step " << s;
    if (cs.pcd) {  // binary chains: equal
      for (size_t m = 0; m < C; ++m)
        for (size_t i = 0; i < V; ++i)
          EXPECT_EQ(chains(i, m), ch[(s * C + m) * V + i]) << "step " << s << " chain " << m;
    }
    EXPECT_EQ(sgd_momentum_update(theta.data.data(), mom.data.data(), grad.data.data(), fx.hyper, 0, n), 0u);
    for (size_t k = 0; k < n; ++k) {
      const double d = std::abs(theta.data[k] - p_ref[k]);
      max_param = std::max(max_param, d);
      EXPECT_LE(d, kParamTol) << cs.name << " after update " << s << ", parameter " << k << ": "
                              << theta.data[k] << " vs " << p_ref[k];
    }
  }
  RecordProperty("max_grad_error", std::to_string(max_grad));
  RecordProperty("max_param_error", std::to_string(max_param));
  std::printf("%s%s: max |gradient error| %.3g, max |parameter error| %.3g\n", cs.name.c_str(),
              naive ? " (naive)" : "", max_grad, max_param);
}

INSTANTIATE_TEST_SUITE_P(
    Cases, ReferenceCase, ::testing::Combine(::testing::Values(0, 1, 2), ::testing::Bool()),
    [](const ::testing::TestParamInfo<std::tuple<int, bool>>& i) {
      return kCases[std::get<0>(i.param)].name + (std::get<1>(i.param) ? "_naive" : "_gemm");
    });
