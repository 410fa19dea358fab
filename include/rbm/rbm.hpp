// rbm/rbm.hpp — the binary Restricted Boltzmann Machine: parameters, free energy,
// conditionals, sampling and the Contrastive Divergence statistics.
//
// defines: rbm::Params (views), rbm::ParamBuffer, rbm::free_energy, hidden_probs,
//          visible_probs, sample_bernoulli, CdWorkspace, cd_gradient, cd_gradient_naive,
//          SgdHyper, sgd_momentum_update
//
// Letters, used in every shape comment:
//   V = visible units (pixels), H = hidden units,
//   B = samples of the mini-batch on this rank, C = PCD chains on this rank,
//   Bg, Cg = the same counted over all ranks.
// Matrices of samples are column-major [V, B]: one sample per column, so that a
// column is exactly one image row of the HDF5 file.
//
// Energy of a joint state (v in {0,1}^V, h in {0,1}^H):
//   E(v, h) = -b'v - c'h - v'W h
// so p(h_j = 1 | v) = sigmoid(c_j + (W'v)_j),  p(v_i = 1 | h) = sigmoid(b_i + (W h)_i).
#pragma once

#include <Eigen/Dense>
#include <cstdint>
#include <new>
#include <vector>

#include "rbm/rng.hpp"

namespace rbm {

using MatrixRM = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using Matrix = Eigen::MatrixXf;  // column-major
using Vector = Eigen::VectorXf;

/// Named views into ONE contiguous float buffer laid out as
///   [ W (V*H, row-major [V, H]) | b (V) | c (H) ]
/// Parameters, gradients and momentum all use this layout, so the allreduce, the
/// checkpoint and the consistency checksum each see a single array.
struct Params {
  size_t V = 0, H = 0;
  Eigen::Map<MatrixRM> W{nullptr, 0, 0};  // [V, H]
  Eigen::Map<Vector> b{nullptr, 0};       // [V] visible bias
  Eigen::Map<Vector> c{nullptr, 0};       // [H] hidden bias

  Params() = default;
  // Copying a Params re-points the views (Eigen::Map's own assignment would copy data).
  Params(const Params& o) : Params(o.base_, o.V, o.H) {}
  Params& operator=(const Params& o) {
    if (this != &o) {
      this->~Params();
      new (this) Params(o.base_, o.V, o.H);
    }
    return *this;
  }
  Params(float* base, size_t V_, size_t H_)
      : V(V_), H(H_), W(base, V_, H_), b(base + V_ * H_, V_), c(base + V_ * H_ + V_, H_),
        base_(base) {}
  static size_t count(size_t V, size_t H) { return V * H + V + H; }
  float* data() const { return base_; }
  size_t size() const { return count(V, H); }

 private:
  float* base_ = nullptr;
};

/// Owns a buffer of Params::count(V, H) + extra floats and hands out the views.
struct ParamBuffer {
  std::vector<float> data;
  Params view;
  ParamBuffer() = default;
  ParamBuffer(size_t V, size_t H, size_t extra = 0)
      : data(Params::count(V, H) + extra, 0.0f), view(data.data(), V, H) {}
  ParamBuffer(const ParamBuffer& o) : data(o.data), view(data.data(), o.view.V, o.view.H) {}
  ParamBuffer& operator=(const ParamBuffer& o) {
    data = o.data;
    view = Params(data.data(), o.view.V, o.view.H);
    return *this;
  }
  size_t V() const { return view.V; }
  size_t H() const { return view.H; }
};

/// Free energy of each column of X:
///   F(v) = -b'v - sum_j softplus(c_j + (W'v)_j),   softplus(x) = log(1 + e^x)
/// so that p(v) = exp(-F(v)) / Z.  Returns [B].
Vector free_energy(const Params& p, const Eigen::Ref<const Matrix>& X);

/// out = sigmoid(W'X + c)   [H, B]
void hidden_probs(const Params& p, const Eigen::Ref<const Matrix>& X, Eigen::Ref<Matrix> out);
/// out = sigmoid(W h + b)   [V, B]
void visible_probs(const Params& p, const Eigen::Ref<const Matrix>& Hs, Eigen::Ref<Matrix> out);

/// In place: P(i, col) <- (u < P(i, col)) ? 1 : 0 with u from
/// rng(stream, sub, step, index[col], unit i).
void sample_bernoulli(const CounterRng& rng, Stream s, uint32_t sub, uint64_t step,
                      const uint64_t* index, Eigen::Ref<Matrix> P);

/// What cd_gradient needs to know about the step.
struct CdConfig {
  int k = 1;           ///< Gibbs steps per update
  bool pcd = false;    ///< negative phase from persistent chains instead of the data
  uint64_t step = 0;   ///< global step (RNG counter)
  size_t Bg = 1;       ///< samples in this global mini-batch (all ranks)
  size_t Cg = 1;       ///< chains over all ranks (PCD)
  /// PCD only: compute the reconstruction error of the data (a monitor that costs one
  /// extra product p(v|h0)); false leaves CdCounters::recon_sq at 0. CD-k gets it free.
  bool recon = true;
  /// PCD only: false = the chains were already advanced by the caller (parallel
  /// tempering, pt.hpp: pt_update leaves the beta = 1 replicas in `chains`); the
  /// negative phase then uses `chains` as they are, with no Gibbs sweep.
  bool sweep_chains = true;
};

/// Reusable buffers, sized on first use.
struct CdWorkspace {
  Matrix A;   // [V, B + N] left: data X0, right: negative visibles (Vk or chains)
  Matrix P;   // [H, B + N] left: p(h|X0),  right: p(h|negative visibles)
  Matrix Hs;  // [H, max(B, C)] sampled hidden states
  Matrix Vr;  // [V, B] first reconstruction p(v|h0) (reconstruction error)
};

/// Result counters of one local CD computation.
struct CdCounters {
  double recon_sq = 0;  ///< sum over local samples and pixels of (x - p(v|h0))^2
};

/// Contrastive Divergence statistics of the local batch, already divided by the
/// GLOBAL counts so that summing over ranks gives the full gradient estimate:
///   dW = (sum_n x_n p(h|x_n)' ) / Bg  -  (sum_m v_m p(h|v_m)') / Ng     [V, H]
///   db = (sum_n x_n) / Bg - (sum_m v_m) / Ng                             [V]
///   dc = (sum_n p(h|x_n)) / Bg - (sum_m p(h|v_m)) / Ng                   [H]
/// Positive phase: hidden PROBABILITIES given the data x_n.
/// CD-k (Ng = Bg, one negative particle per sample): h0 ~ p(h|x) sampled; then k
///   Gibbs steps v_t = p(v|h_{t-1}), h_t = p(h|v_t) where every intermediate v_t and
///   h_t is SAMPLED and the LAST step keeps PROBABILITIES (v_k = p(v|h_{k-1}),
///   negative hidden term p(h|v_k)) — Hinton (2010), sections 3.1-3.3.
/// PCD (Ng = Cg): each chain does k full Gibbs sweeps v -> h (sampled) -> v (sampled),
///   chain visibles stay BINARY; the negative term uses them and p(h|v).
/// `X` [V, B] holds the data in [0, 1]; `sample_index` [B] the global sample ids;
/// `chains` [V, C] (PCD only, updated in place), `chain_index` [C] global chain ids.
/// The step's RNG draws are indexed by (step, global id, unit): rank-count invariant.
CdCounters cd_gradient(const Params& p, const CdConfig& cfg, const Eigen::Ref<const Matrix>& X,
                       const uint64_t* sample_index, Matrix* chains, const uint64_t* chain_index,
                       const CounterRng& rng, CdWorkspace& ws, Params grad);

/// cd_gradient in two parts, so that the weight product can be made in buckets of rows
/// (and each bucket reduced while the next is computed, node_shared.hpp):
/// cd_statistics does everything but grad.W (it fills grad.b, grad.c and leaves the
/// scaled operands in ws); cd_weight_rows(ws, grad, i0, i1) then computes rows [i0, i1)
/// of grad.W. cd_gradient = cd_statistics + cd_weight_rows(0, V).
CdCounters cd_statistics(const Params& p, const CdConfig& cfg, const Eigen::Ref<const Matrix>& X,
                         const uint64_t* sample_index, Matrix* chains, const uint64_t* chain_index,
                         const CounterRng& rng, CdWorkspace& ws, Params grad);
void cd_weight_rows(const CdWorkspace& ws, Params grad, size_t i0, size_t i1);

/// The same statistics with plain loops over units and samples: the reference
/// implementation the GEMM version is tested against (HPCG's *_ref idea).
CdCounters cd_gradient_naive(const Params& p, const CdConfig& cfg, const Matrix& X,
                             const uint64_t* sample_index, Matrix* chains,
                             const uint64_t* chain_index, const CounterRng& rng, Params grad);

/// Hyper-parameters of one update (those in force for the step's epoch).
struct SgdHyper {
  float lr = 0.1f;            ///< learning rate
  float momentum = 0.5f;      ///< mu
  float weight_decay = 0.0f;  ///< lambda, L2 on the weights only
  size_t n_weights = 0;       ///< V*H: elements [0, V*H) of the layout are W
};

/// SGD with momentum and L2 weight decay (Hinton 2010, sections 9-10) on elements
/// [a, b) of the parameter layout [W | b | c], from the summed gradient g:
///   m_i     <- mu m_i + lr (g_i - lambda theta_i)     i <  V*H (weights)
///   m_i     <- mu m_i + lr g_i                        i >= V*H (biases)
///   theta_i <- theta_i + m_i
/// Returns 1 if some new theta_i is NaN or infinite (exponent bits all ones), else 0.
/// Each element is independent, so the local ranks of a node update disjoint segments.
uint32_t sgd_momentum_update(float* theta, float* momentum, const float* g, const SgdHyper& h,
                             size_t a, size_t b);

/// Numerically stable softplus log(1 + e^x).
inline float softplus(float x) { return x > 0 ? x + std::log1p(std::exp(-x)) : std::log1p(std::exp(x)); }
inline double softplus(double x) {
  return x > 0 ? x + std::log1p(std::exp(-x)) : std::log1p(std::exp(x));
}

}  // namespace rbm
