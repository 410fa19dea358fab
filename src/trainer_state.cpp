// trainer_state.cpp — the trainer's state in and out: initialisation, --init-from,
// resume, checkpoints (one file per epoch, best.h5) and the --metrics file.
#include "rbm/trainer.hpp"

#include <mpi.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <sstream>
#include <tuple>

#include "rbm/atomic_file.hpp"
#include "rbm/blas_backend.hpp"
#include "rbm/errors.hpp"
#include "rbm/eval.hpp"
#include "rbm/gemm_bf16.hpp"
#include "rbm/paths.hpp"
#include "rbm/rbm_bf16.hpp"
#include "trainer_internal.hpp"

namespace rbm {

using namespace trainer_detail;

/// Hinton (2010), section 8: W ~ N(0, init_std^2), b_i = log(p_i / (1 - p_i)) with
/// p_i the training-set mean of pixel i (one allreduce), c = 0. PCD chains start
/// from Bernoulli(p_i).
void Trainer::init_params() {
  // Pixel means of the training inputs as the model sees them (after binarisation;
  // stochastic binarisation has the same mean as pixel/255): one allreduce.
  std::vector<double> sum(V_, 0.0);
  for (size_t l = 0; l < train_.rows(); ++l) {
    const uint8_t* r = train_.row(l);
    for (size_t i = 0; i < V_; ++i) sum[i] += binarizer_.mean(r[i]);
  }
  MPI_Allreduce(MPI_IN_PLACE, sum.data(), static_cast<int>(V_), MPI_DOUBLE, MPI_SUM,
                MPI_COMM_WORLD);
  // The node's leader writes the parameters straight into the shared copy (every
  // leader computes the same numbers; no rank holds a model-sized temporary).
  if (shared_->leader()) {
    Params& p = theta_;
    for (size_t i = 0; i < V_; ++i) {
      for (size_t j = 0; j < H_; j += 2) {
        auto r = rng_.bits(Stream::weight_init, 0, 0, i, static_cast<uint32_t>(j / 2));
        // Box-Muller on two uniforms in (0, 1].
        double u1 = (static_cast<double>(r[0] >> 8) + 1.0) * 0x1.0p-24;
        double u2 = static_cast<double>(r[1] >> 8) * 0x1.0p-24;
        double rad = std::sqrt(-2.0 * std::log(u1)), ang = 2.0 * M_PI * u2;
        p.W(i, j) = static_cast<float>(cfg_.init_std * rad * std::cos(ang));
        if (j + 1 < H_) p.W(i, j + 1) = static_cast<float>(cfg_.init_std * rad * std::sin(ang));
      }
    }
    const double n = static_cast<double>(train_.total);
    for (size_t i = 0; i < V_; ++i) {
      double pi = std::clamp(sum[i] / n, 1e-3, 1.0 - 1e-3);  // keep the log finite
      p.b(i) = static_cast<float>(std::log(pi / (1.0 - pi)));
    }
    p.c.setZero();
  }
  shared_->barrier();
  init_chains();
}

/// PCD chains start from Bernoulli(sigmoid(b_i)) of the current visible biases; with
/// --pt, replica r of chain m from the same distribution with uniforms
/// rng(chain_init, sub r, 0, chain id) (r = 0: the PCD chain's own draws).
void Trainer::init_chains() {
  std::vector<float> u(V_);
  const size_t K = cfg_.pt ? cfg_.pt : 1;
  const Eigen::Index C = chains_.cols();
  for (size_t r = 0; r < K; ++r)
    for (Eigen::Index m = 0; m < C; ++m) {
      rng_.uniforms(Stream::chain_init, static_cast<uint32_t>(r), 0, chain_index_[m], u.data(), V_);
      for (size_t i = 0; i < V_; ++i) {
        const float x = u[i] < 1.0f / (1.0f + std::exp(-theta_.b(i))) ? 1.0f : 0.0f;
        if (r == 0) chains_(i, m) = x;
        if (cfg_.pt) replicas_(i, static_cast<Eigen::Index>(r) * C + m) = x;
      }
    }
}

/// --init-from: a new run (step 0, momentum 0, this run's options) from a model's
/// parameters; rank 0 reads and checks it, every node gets it by one broadcast.
void Trainer::init_from_model(const std::string& path) {
  agree(env_, [&] {
    if (!env_.root()) return;
    ParamBuffer m = read_model(path);
    if (m.V() != V_ || m.H() != H_)
      throw UsageError(fmt("--init-from ", path, ": model is ", m.V(), "x", m.H(),
                           " but the data has ", V_, " pixels and --hidden is ", H_,
                           " (give --hidden ", m.H(), ")"));
    for (float x : m.data)
      if (!std::isfinite(x)) throw UsageError("--init-from " + path + ": holds NaN or infinite values");
    std::copy(m.data.begin(), m.data.end(), theta_.data());
  });
  shared_->broadcast_from_root(theta_.data(), theta_.size());
  init_chains();
}

/// Rank 0 alone reads and checks the checkpoint (no metadata storm from many ranks)
/// straight into its node's shared copy; the other nodes get it by one broadcast.
void Trainer::resume_from(const std::string& path) {
  TrainState st;
  agree(env_, [&] {
    if (!env_.root()) return;
    ParamBuffer m = read_model(path);
    if (m.V() != V_ || m.H() != H_)
      throw UsageError(fmt(path, ": model is ", m.V(), "x", m.H(), " but the data has ", V_,
                           " pixels and --hidden is ", H_));
    for (float x : m.data)
      if (!std::isfinite(x))
        throw UsageError(path + ": /model holds NaN or infinite values (a diverged or damaged "
                                "checkpoint; start again or resume an earlier one)");
    st = read_train_state(path, V_, H_);
    if (st.steps_per_epoch != steps_per_epoch_)
      throw UsageError(fmt(path, ": written with ", st.steps_per_epoch,
                           " steps per epoch, this run has ", steps_per_epoch_, " (--drop-last ",
                           cfg_.drop_last, "; same --data, --batch-size and --drop-last needed "
                           "to resume: checkpoints from before --drop-last existed need "
                           "--drop-last off)"));
    if (cfg_.pcd && st.chains.size() != Cg_ * V_)
      throw UsageError(fmt(path, ": holds ", st.chains.size() / V_, " PCD chains, --chains is ",
                           Cg_));
    // --pt must continue with the checkpoint's ladder (or its absence).
    const size_t K = st.pt_betas.size();
    if (K != cfg_.pt)
      throw UsageError(K ? fmt(path, ": was written with --pt ", K, ", this run has --pt ", cfg_.pt,
                               " (resume with --pt ", K, ")")
                         : fmt(path, ": was written without --pt; --pt ", cfg_.pt,
                               " cannot continue it (start a new run with --init-from ", path, ")"));
    if (K && std::abs(st.pt_betas[K - 1] - cfg_.pt_min_beta) > 1e-12 * cfg_.pt_min_beta)
      throw UsageError(fmt(path, ": was written with --pt-min-beta ", st.pt_betas[K - 1],
                           ", this run has ", cfg_.pt_min_beta, " (resume with --pt-min-beta ",
                           st.pt_betas[K - 1], ")"));
    if (K && st.pt_chains.size() != K * Cg_ * V_)
      throw UsageError(fmt(path, ": holds ", st.pt_chains.size() / (K * V_),
                           " tempered chains, --chains is ", Cg_));
    std::copy(m.data.begin(), m.data.end(), theta_.data());
    std::copy(st.momentum.begin(), st.momentum.end(), momentum_);
  });
  shared_->broadcast_from_root(theta_.data(), theta_.size());
  shared_->broadcast_from_root(momentum_, theta_.size());
  // The small state and the chains (binary, C x V bytes) to every rank.
  double scalars[7] = {static_cast<double>(st.step), st.epoch_recon_sq, st.epoch_samples,
                       st.seconds, static_cast<double>(st.ranks), st.best_pll,
                       static_cast<double>(st.best_epoch)};
  MPI_Bcast(scalars, 7, MPI_DOUBLE, 0, MPI_COMM_WORLD);
  best_pll_ = scalars[5];
  best_epoch_ = static_cast<uint64_t>(scalars[6]);
  unsigned long long step = st.step;  // exact, whatever its size
  MPI_Bcast(&step, 1, MPI_UNSIGNED_LONG_LONG, 0, MPI_COMM_WORLD);
  if (cfg_.pcd) {
    st.chains.resize(Cg_ * V_);
    for (size_t off = 0; off < st.chains.size(); off += size_t{1} << 30)
      MPI_Bcast(st.chains.data() + off,
                static_cast<int>(std::min(st.chains.size() - off, size_t{1} << 30)), MPI_UINT8_T,
                0, MPI_COMM_WORLD);
  }
  for (Eigen::Index l = 0; l < chains_.cols(); ++l)
    for (size_t i = 0; i < V_; ++i) chains_(i, l) = st.chains[chain_index_[l] * V_ + i];
  if (cfg_.pt) {  // the replicas (K x Cg x V bytes) and this epoch's swap counts
    const size_t K = cfg_.pt;
    const Eigen::Index C = chains_.cols();
    st.pt_chains.resize(K * Cg_ * V_);
    st.pt_swaps.resize(2 * (K - 1));
    for (size_t off = 0; off < st.pt_chains.size(); off += size_t{1} << 30)
      MPI_Bcast(st.pt_chains.data() + off,
                static_cast<int>(std::min(st.pt_chains.size() - off, size_t{1} << 30)),
                MPI_UINT8_T, 0, MPI_COMM_WORLD);
    MPI_Bcast(st.pt_swaps.data(), static_cast<int>(st.pt_swaps.size()), MPI_DOUBLE, 0,
              MPI_COMM_WORLD);
    for (size_t r = 0; r < K; ++r)
      for (Eigen::Index l = 0; l < C; ++l)
        for (size_t i = 0; i < V_; ++i)
          replicas_(static_cast<Eigen::Index>(i), static_cast<Eigen::Index>(r) * C + l) =
              st.pt_chains[(r * Cg_ + chain_index_[l]) * V_ + i];
    std::copy_n(st.pt_swaps.begin(), K - 1, swap_accepted_.begin());
    std::copy_n(st.pt_swaps.begin() + static_cast<std::ptrdiff_t>(K - 1), K - 1,
                swap_tried_.begin());
  }
  start_step_ = step;
  epoch_.recon_sq = scalars[1];
  epoch_.samples = scalars[2];
  seconds_before_ = scalars[3];
  // Bitwise continuation needs the same summation order: the same ranks on the same
  // node layout (rank 0 has the checkpoint's layout and this job's).
  if (env_.root()) {
    const std::string was = st.layout.empty() ? fmt(st.ranks, " ranks") :
                            fmt(st.ranks, " ranks on ", st.nodes, st.nodes == 1 ? " node" : " nodes",
                                " (", st.layout, ")");
    const std::string now_ = fmt(env_.size, " ranks on ", shared_->nodes(),
                                 shared_->nodes() == 1 ? " node" : " nodes", " (", layout_, ")");
    if (st.ranks != env_.size || (!st.layout.empty() && st.layout != layout_))
      std::printf("note: %s was written by %s, this job has %s: training continues, but "
                  "not bitwise as an uninterrupted run\n",
                  path.c_str(), was.c_str(), now_.c_str());
  }
}

/// The file a checkpoint at `next_step` goes to: --checkpoint with '{epoch}' replaced
/// by the epoch the state belongs to (a mid-epoch state is in its epoch's file, which
/// that epoch's end then replaces).
std::string Trainer::checkpoint_file(uint64_t next_step) const {
  return checkpoint_file_for_epoch((next_step + steps_per_epoch_ - 1) / steps_per_epoch_);
}

std::string Trainer::checkpoint_file_for_epoch(uint64_t epoch) const {
  std::string path = cfg_.checkpoint;
  const size_t at = path.find("{epoch}");
  if (at == std::string::npos) return path;
  return path.replace(at, 7, std::to_string(std::max<uint64_t>(epoch, 1)));
}

std::string Trainer::best_file() const {
  const std::filesystem::path ck(cfg_.checkpoint);
  return (ck.parent_path() / "best.h5").string();
}

void Trainer::save(uint64_t next_step, const std::string& why) {
  write_state(checkpoint_file(next_step), next_step);
  if (env_.root()) {
    std::printf("checkpoint %s written (%s, step %llu)\n", checkpoint_file(next_step).c_str(),
                why.c_str(), static_cast<unsigned long long>(next_step));
    std::fflush(stdout);
  }
}

void Trainer::write_state(const std::string& path, uint64_t next_step) {
  TrainState st;
  st.checkpoint_file = path;
  st.checkpoint_pattern = cfg_.checkpoint;
  st.metrics_file = cfg_.metrics;
  st.best_pll = best_pll_;
  st.best_epoch = best_epoch_;
  st.step = next_step;
  st.epoch = next_step / steps_per_epoch_;
  st.seed = cfg_.seed;
  st.steps_per_epoch = steps_per_epoch_;
  st.ranks = env_.size;
  st.nodes = shared_->nodes();
  st.ranks_per_node = max_local_;
  st.layout = layout_;
  st.seconds = seconds_before_ + (now() - start_time_);
  st.epoch_recon_sq = epoch_.recon_sq;
  st.epoch_samples = epoch_.samples;
  st.config = config_text_;
  st.momentum.assign(momentum_, momentum_ + theta_.size());
  if (cfg_.pcd) st.chains = gather_binary(chains_, 1);
  if (cfg_.pt) {
    st.pt_chains = gather_binary(replicas_, cfg_.pt);
    st.pt_betas = pt_betas(static_cast<int>(cfg_.pt), cfg_.pt_min_beta);
    st.pt_swaps = swap_accepted_;
    st.pt_swaps.insert(st.pt_swaps.end(), swap_tried_.begin(), swap_tried_.end());
  }
  // Rank 0 writes; every rank learns the outcome, so a failed write (full disk, EIO)
  // is one line from rank 0 and exit 1 on every rank, the last good checkpoint intact.
  agree(env_, [&] {
    if (env_.root()) write_checkpoint(path, theta_, &st);
  });
}

std::vector<uint8_t> Trainer::gather_binary(const Matrix& local, size_t blocks) const {
  std::vector<uint8_t> mine(static_cast<size_t>(local.size()));
  for (Eigen::Index k = 0; k < local.size(); ++k) mine[static_cast<size_t>(k)] = local.data()[k] > 0.5f;
  std::vector<int> counts(env_.size), displs(env_.size);
  int n = static_cast<int>(mine.size());
  MPI_Gather(&n, 1, MPI_INT, counts.data(), 1, MPI_INT, 0, MPI_COMM_WORLD);
  if (env_.root())
    for (int r = 1; r < env_.size; ++r) displs[r] = displs[r - 1] + counts[r - 1];
  std::vector<uint8_t> gathered(env_.root() ? blocks * Cg_ * V_ : 0), all(gathered.size());
  MPI_Gatherv(mine.data(), n, MPI_UINT8_T, gathered.data(), counts.data(), displs.data(),
              MPI_UINT8_T, 0, MPI_COMM_WORLD);
  if (env_.root())
    for (int r = 0; r < env_.size; ++r) {
      ShardLayout cl(Cg_, r, env_.size);
      const size_t C = cl.local_rows();
      for (size_t k = 0; k < blocks; ++k)
        for (size_t l = 0; l < C; ++l)
          std::copy_n(gathered.data() + displs[r] + (k * C + l) * V_, V_,
                      all.data() + (k * Cg_ + cl.global_row(l)) * V_);
    }
  return all;
}

/// Appends one JSON line to --metrics (rank 0; every rank learns if that failed).
void Trainer::append_metrics(const std::string& line) {
  if (cfg_.metrics.empty()) return;
  agree(env_, [&] {
    if (!env_.root()) return;
    std::ofstream m(cfg_.metrics, std::ios::app);
    m << line;
    m.flush();
    if (!m) throw Error("--metrics " + cfg_.metrics + ": cannot write (" + std::strerror(errno) + ")");
  });
}

/// On resume, --metrics keeps only the epochs the checkpoint has completed (a run
/// killed after writing epoch e's line but before its checkpoint would repeat e), and
/// is rewritten atomically. Lines that are not epoch records are kept.
void Trainer::trim_metrics(uint64_t completed_epochs) {
  if (cfg_.metrics.empty()) return;
  agree(env_, [&] {
    if (!env_.root() || !std::filesystem::exists(cfg_.metrics)) return;
    std::ifstream in(cfg_.metrics);
    std::string kept, line;
    size_t dropped = 0;
    while (std::getline(in, line)) {
      unsigned long long e = 0;
      if (std::sscanf(line.c_str(), "{\"epoch\": %llu", &e) == 1 && e > completed_epochs) {
        ++dropped;
        continue;
      }
      kept += line + "\n";
    }
    if (!dropped) return;
    AtomicFile out(cfg_.metrics);
    {
      std::ofstream o(out.temp_path(), std::ios::trunc);
      o << kept;
      o.flush();
      if (!o) throw Error("--metrics " + cfg_.metrics + ": cannot rewrite (" + std::strerror(errno) + ")");
    }
    out.commit();
    std::printf("note: %s: dropped %zu epoch line(s) after epoch %llu, the checkpoint's\n",
                cfg_.metrics.c_str(), dropped, static_cast<unsigned long long>(completed_epochs));
  });
}

}  // namespace rbm
