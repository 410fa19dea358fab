// rbm/trainer.hpp — data-parallel CD-k / PCD training over MPI.
//
// defines: rbm::TrainConfig, train_options, validate, rbm::Trainer
//
// One step, on every rank (the whole algorithm; see Trainer::step):
//   1. X      = this rank's rows of global mini-batch s                [V, B]
//               (rows of its own virtual shards, shard.hpp: the same batches for any P)
//   2. g      = cd_gradient(X)  (positive - negative statistics / Bg)   one buffer
//   3. g     += counters (reconstruction error, samples, stop flag)
//   4. sum g over all ranks    — one fused reduction (node_shared.hpp: through the node's
//                                shared memory, then ONE MPI_Allreduce across nodes; with
//                                --overlap on and several nodes, one MPI_Iallreduce per
//                                bucket of dW rows, posted while the next bucket is computed)
//   5. m      = mu * m + lr * (g - wd * [W, 0, 0]);  theta += m   (sgd_momentum_update)
// theta and its momentum m exist once per node (shared memory) and the update of each segment
// is made by one local rank, so every rank sees the same model after every step.
#pragma once

#include <cmath>
#include <cstdint>
#include <utility>
#include <memory>
#include <string>

#include "rbm/binarize.hpp"
#include "rbm/checkpoint.hpp"
#include "rbm/cli.hpp"
#include "rbm/dataset.hpp"
#include "rbm/mpi_env.hpp"
#include "rbm/node_shared.hpp"
#include "rbm/pt.hpp"
#include "rbm/rbm.hpp"
#include "rbm/rbm_bf16.hpp"

namespace rbm {

struct TrainConfig {
  std::string data, train_path, monitor_path, checkpoint, resume, metrics, init_from;
  bool force = false, keep_best = false;
  bool report = true;  ///< print the start-up data line (not an option; rbm_bench sets false)
  size_t early_stop = 0, pll_draws = 5;
  size_t hidden = 500, epochs = 20, batch = 100, chains = 0, monitor_size = 1000;
  int cd_k = 1;
  bool pcd = false;
  size_t pt = 0;                ///< --pt K: tempered replicas per chain (0 = off; implies PCD)
  double pt_min_beta = 0.7;     ///< --pt-min-beta: the hottest replica's inverse temperature
  double lr = 0.1, lr_decay = 0.0, momentum = 0.9, initial_momentum = 0.5;
  std::string lr_schedule = "constant";  ///< constant | linear ("auto" resolved by method)
  size_t momentum_epochs = 5;
  double weight_decay = 2e-4, init_std = 0.01;
  std::string binarize = "stochastic", shuffle = "epoch", progress = "auto";
  uint64_t seed = 1;
  size_t checkpoint_every = 1, check_consistency = 100;
  int node_size = 0;
  size_t shards = 720;          ///< virtual shards S (shard.hpp)
  std::string overlap = "on";   ///< on | off: bucketed MPI_Iallreduce across nodes
  std::string drop_last = "on";  ///< on: floor(N/B) full steps per epoch | off: last one partial
  std::string precision = "fp32";  ///< fp32 | bf16 (products only; see rbm_bf16.hpp)
};

/// The one declaration of rbm_dist's options (feeds --help, --config, the README
/// table and the start-up configuration table); values are bound into `cfg`.
cli::po::options_description train_options(TrainConfig& cfg);

/// Options whose default depends on the method (CD-k or persistent chains), for those
/// not given on the command line, in --config or in the resumed checkpoint:
///   --momentum     0.9 for CD-k, 0.5 with persistent chains (--pcd, --pt)
///   --lr-schedule  constant for CD-k, linear with persistent chains
/// Why (measured on Fashion-MNIST 784x500, README "The learning rule"): with persistent
/// chains the model and its negative particles form a feedback loop; momentum 0.9 lets
/// the parameters overshoot before the chains follow, and the run diverges at the
/// momentum switch (reconstruction error 0.098 -> 0.17-0.19, validation PLL -228 ->
/// -400 .. -690), even at lr 0.01. Tieleman (2008) decays the learning rate linearly to
/// zero so that the chains can catch up with the last updates.
void apply_method_defaults(TrainConfig& cfg, cli::Parsed& parsed);

/// Checks values that need no data (hidden >= 1, lr >= 0, ...). Throws UsageError.
void validate(const TrainConfig& cfg);

/// SIGTERM / SIGUSR1 set a flag that the next step folds into its allreduce: all
/// ranks stop after the same step, rank 0 checkpoints, all exit 75. Installed first
/// thing in main() so that a signal during start-up is not fatal either.
void install_stop_handlers();

class Trainer {
 public:
  Trainer(const MpiEnv& env, const TrainConfig& cfg, std::string config_text);

  /// Reads this rank's shards, initialises or resumes. Collective.
  void setup();
  /// Trains to cfg.epochs; returns the exit code (0, or 75 after a signal).
  int run();
  /// One training step (global step number `t`); returns true if a stop was requested.
  bool step(uint64_t t);

  const Params& params() const { return theta_; }
  size_t steps_per_epoch() const { return steps_per_epoch_; }
  size_t train_rows() const { return train_.total; }
  /// Seconds spent in the steps' reductions since the last epoch report (or start).
  double reduce_seconds() const { return reduce_seconds_; }

 private:
  struct Monitor {
    double recon_sq = 0, samples = 0;  // this epoch (restored from a mid-epoch checkpoint)
    double timed_samples = 0;          // this epoch, processed by this run (samples/s)
  };
  void init_params();
  void resume_from(const std::string& path);
  void load_batch(uint64_t t, Matrix& X, std::vector<uint64_t>& index) const;
  /// Local rows [lo, hi) of `s` (through `perm` when given) as [V, hi - lo] visible
  /// values; `index` gets their global ids.
  void binarize_rows(const RowBlock& s, const std::vector<uint32_t>& local, uint64_t rng_step,
                     Matrix& X, std::vector<uint64_t>* index) const;
  SgdHyper hyper_for_epoch(uint64_t epoch) const;
  CollectiveError diverged(uint64_t t, uint64_t epoch) const;
  void shuffle_for_epoch(uint64_t epoch);
  double mean_free_energy(const RowBlock& s, size_t m);
  void read_data(const std::string& monitor_path);
  void save(uint64_t next_step, const std::string& why);
  void check_consistency(uint64_t t);
  bool live_progress() const;
  struct EpochReport {
    std::string metrics;  ///< the --metrics JSON line
    double pll = NAN;     ///< monitor pseudo-log-likelihood (NaN without a monitor)
  };
  /// Prints the epoch line (rank 0); the same report on every rank.
  EpochReport epoch_report(uint64_t epoch, uint64_t next_step, double train_seconds);
  std::pair<double, double> monitor_pll();
  std::string checkpoint_file(uint64_t next_step) const;
  std::string checkpoint_file_for_epoch(uint64_t epoch) const;
  std::string best_file() const;
  void write_state(const std::string& path, uint64_t next_step);
  void init_from_model(const std::string& path);
  void init_chains();
  /// Gathers local columns [V, blocks*C] (binary) on rank 0 as rows in global order:
  /// row k*Cg + chain id holds column k*C + m (block k of local chain m).
  std::vector<uint8_t> gather_binary(const Matrix& local, size_t blocks) const;
  void append_metrics(const std::string& line);
  void trim_metrics(uint64_t completed_epochs);
  void check_same_configuration() const;
  void report_communication(uint64_t steps);

  MpiEnv env_;
  TrainConfig cfg_;
  std::string config_text_;
  RowBlock train_, monitor_;   // this rank's virtual shards; its part of the monitor rows
  VirtualShards shards_;
  BatchRule rule_;
  size_t monitor_rows_ = 0;    // min(--monitor-size, monitor set) over all ranks
  bool have_monitor_ = false;
  size_t V_ = 0, H_ = 0, Cg_ = 0;
  size_t steps_per_epoch_ = 0;
  size_t epoch_positions_ = 0;  // positions an epoch visits: steps * B (--drop-last on) or N
  std::unique_ptr<NodeShared> shared_;
  std::string layout_;         // ranks per node in rank order, e.g. "2+2" (rank 0 only)
  int max_local_ = 0;          // ranks on the largest node (rank 0 only)  // the node's copy of theta, momentum and the sums
  Params theta_;               // parameters, shared per node         [W | b | c]
  float* momentum_ = nullptr;  // momentum, shared per node, same layout [W | b | c]
  Params grad_;                // this rank's gradient slot: g          [W | b | c]
  float* counters_ = nullptr;  // ... followed by its counters          [recon, n, stop]
  Matrix chains_;              // [V, C] this rank's persistent chains (PCD)
  std::vector<uint64_t> chain_index_;
  // --pt K: replicas [V, K*C] (column r*C + m: chain m at beta_r; chains_ = its beta = 1
  // block after each update), the ladder, and this epoch's swap counts per pair [K-1]
  // (summed over all ranks; restored from a mid-epoch checkpoint).
  Matrix replicas_;
  PtWorkspace pt_ws_;
  std::vector<float> betas_;
  std::vector<double> swap_accepted_, swap_tried_;
  size_t n_counters_ = 0;      // counters after the gradient: kCounters + (K-1) swap counts
  std::vector<uint32_t> perm_; // this epoch's order of each owned shard's rows (local offsets)
  mutable std::vector<uint32_t> batch_rows_;  // local rows of the current batch
  mutable std::vector<ShardPos> batch_pos_;   // its positions in the epoch
  uint64_t perm_epoch_ = UINT64_MAX;
  CounterRng rng_;
  Precision prec_ = Precision::fp32;
  CdBf16Workspace ws_;         // cd_gradient's buffers (+ the bf16 ones with --precision bf16)
  Matrix X_;
  std::vector<uint64_t> index_;
  Binarizer binarizer_;        // pixels -> visible values (binarize.hpp)
  uint64_t start_step_ = 0;
  Monitor epoch_;
  double seconds_before_ = 0;  // training time of earlier runs (resume)
  double start_time_ = 0;
  std::string monitor_split_ = "valid";  // "valid" or "test": what the epoch line calls it
  bool warned_exploded_ = false;
  double best_pll_ = -HUGE_VAL;  // --keep-best
  uint64_t best_epoch_ = 0;
  double reduce_seconds_ = 0;  // time in the step's reduction (+ update, barriers) this epoch
  double comm_seconds_ = 0;    // this run: a node leader waited for the cross-node reduction
  double step_seconds_ = 0;    // this run: time in step()
};

}  // namespace rbm
