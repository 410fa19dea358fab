// rbm/pt.hpp — parallel tempering for the negative phase (rbm_dist --pt K).
//
// defines: rbm::pt_betas, pt_pair_attempted, PtWorkspace, pt_log_marginal, pt_update
//
// Desjardins, Courville, Bengio, Vincent & Delalleau (2010), "Tempered Markov Chain
// Monte Carlo for training of Restricted Boltzmann Machines". Every persistent chain m
// (global id, distributed over the ranks exactly as the PCD chains) has K replicas
// r = 0..K-1 at inverse temperatures 1 = beta_0 > beta_1 > ... > beta_{K-1} = beta_min.
// Replica r samples the tempered distribution
//   p_beta(v, h) ∝ exp(-beta E(v, h)),   E(v, h) = -b'v - c'h - v'W h
// whose conditionals are the RBM's with every input scaled by beta:
//   p_beta(h_j = 1 | v) = sigmoid(beta (c_j + W_j'v)),  p_beta(v_i = 1 | h) = sigmoid(beta (b_i + W_i h))
// and whose visible marginal is (unnormalised)
//   log f_beta(v) = beta b'v + sum_j softplus(beta (c_j + W_j'v)).
// The replicas at beta = 1 are the chains of the PCD negative phase.
//
// Replica matrix: [V, K*C] on each rank, column r*C + m = replica r of local chain m
// (temperature-major, so the K blocks are contiguous and one GEMM advances them all).
#pragma once

#include <cstdint>
#include <vector>

#include "rbm/rbm.hpp"
#include "rbm/rng.hpp"

namespace rbm {

/// The ladder: geometric in beta,
///   beta_r = beta_min^(r / (K-1)),  r = 0..K-1   (beta_0 = 1, beta_{K-1} = beta_min).
/// Why geometric: the log acceptance of a swap of neighbours r, r+1 is
/// (beta_r - beta_{r+1}) (E_r - E_{r+1}) in the joint (v, h) picture, whose typical size
/// is (Δbeta)² Var(E) ≈ (Δbeta / beta)² C_v with C_v = beta² Var(E) the heat capacity;
/// with a roughly constant heat capacity over the range, equal ratios beta_{r+1}/beta_r
/// give every pair the same acceptance (Kofke 2002, J. Chem. Phys. 117, 6911; Earl & Deem
/// 2005), where a ladder linear in beta would crowd the hot end and starve the cold one.
/// Computed in double; the sampler uses float(beta_r).
std::vector<double> pt_betas(int K, double beta_min);

/// Deterministic even/odd schedule (DEO; Okabe et al. 2001, Syed et al. 2019): at step t
/// only the pairs (r, r+1) with r ≡ t (mod 2) are proposed — disjoint pairs, so the order
/// within a step does not matter, and a state can travel the whole ladder in K steps
/// (non-reversible), where random pair choice diffuses in ~K² steps.
inline bool pt_pair_attempted(uint64_t step, size_t r) { return (r & 1u) == (step & 1u); }

/// Reusable buffers of pt_update, sized on first use.
struct PtWorkspace {
  Matrix A;                     // [H, K*C] pre-activations c + W'v, then p_beta(h|v)
  Matrix Hs;                    // [H, K*C] sampled hidden states
  std::vector<uint64_t> index;  // [K*C] RNG index of each column: r * Cg + global chain id
};

/// log f_beta(v) for one visible vector v with pre-activation a = c + W'v [H] and
/// b'v = bv, accumulated in double: beta bv + sum_j softplus(beta a_j).
double pt_log_marginal(const Eigen::Ref<const Vector>& a, double bv, float beta);

/// One parallel-tempering update of the replicas [V, K*C] (binary, updated in place):
///  1. swaps: A = c + W'V (one GEMM over all K*C columns); for every pair (r, r+1) that
///     pt_pair_attempted(step, r), on every chain m with states x (at beta_r) and y (at
///     beta_{r+1}): exchange x and y with probability min(1, exp(L)),
///        L = log f_r(y) + log f_{r+1}(x) - log f_r(x) - log f_{r+1}(y)
///     (Metropolis on the product of the tempered marginals, in log space), with the
///     uniform rng(pt_swap, 0, step, chain id, unit r). Accepted: the columns of V and A
///     are exchanged, and accepted[r] += 1.
///  2. `sweeps` Gibbs sweeps v -> h -> v of every replica at its own beta: h ~ sigmoid(beta
///     A) (A recomputed from V after the first sweep), v ~ sigmoid(beta (W h + b)): one
///     GEMM each way over the K*C columns, columns scaled by their beta; uniforms
///     rng(pt_hidden / pt_visible, t, step, r * Cg + chain id, unit).
/// Swaps first: they use the pre-activations the first sweep needs anyway (one GEMM fewer
/// than sweeps-then-swaps, and the same Markov chain shifted by half an update); the
/// statistics are taken from the beta = 1 block after the sweeps, V.leftCols(C).
/// Every draw is indexed by (step, global chain id, replica or pair): the result does
/// not depend on how the chains are spread over ranks. K*Cg must be < 2^32.
/// `accepted` [K-1] is incremented (float: per-step counts are exact up to 2^24).
void pt_update(const Params& p, const std::vector<float>& beta, int sweeps, uint64_t step,
               uint64_t Cg, const uint64_t* chain_index, const CounterRng& rng,
               Matrix& replicas, PtWorkspace& ws, float* accepted);

}  // namespace rbm
