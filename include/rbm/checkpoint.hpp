// rbm/checkpoint.hpp — the model / checkpoint file, written atomically.
//
// defines: rbm::TrainState, write_checkpoint, read_model, has_train_state, read_train_state
//
// Schema (README "File formats"), readable by any HDF5 tool:
//   /model/weights        float32 [V, H]
//   /model/visible_bias   float32 [V]
//   /model/hidden_bias    float32 [H]
//   root attributes       format = "rbm-checkpoint" (string), format_version = 1 (int)
//   /train                everything needed to resume (absent in a model-only file):
//     attributes step, epoch, seed, ranks, nodes, ranks_per_node (the largest node),
//       layout (ranks of each node in rank order, e.g. "2+2"), steps_per_epoch, seconds,
//       config (the full
//       configuration as 'name = value' lines), epoch_recon_sq, epoch_samples
//     /train/momentum     float32 [V*H + V + H]  (the parameter layout of rbm.hpp)
//     /train/chains       uint8 [C, V]  persistent chains in global chain order (PCD only)
//     --pt K only (parallel tempering, pt.hpp):
//     /train/pt_chains    uint8 [K, C, V]  replica r of chain m at [r, m, :] (r = 0 is
//                         beta = 1, the same states as /train/chains)
//     /train/pt_betas     float64 [K]  the ladder 1 = beta_0 > ... > beta_{K-1}
//     /train/pt_swaps     float64 [2, K-1]  this epoch's accepted [0, r] and proposed
//                         [1, r] swaps of pair (r, r+1), all ranks (a mid-epoch resume
//                         continues the epoch's rates)
// A file with only /model and the two attributes is a valid model for every tool.
//
// Atomic: the file is written to "<path>.tmp.<pid>" in the same folder, flushed,
// fsync'ed and renamed over <path>; a crash at any point leaves either the old
// complete file or the new complete file, never a half-written one.
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "rbm/rbm.hpp"

namespace rbm {

inline constexpr const char* kCheckpointFormat = "rbm-checkpoint";
inline constexpr int kCheckpointVersion = 1;

struct TrainState {
  uint64_t step = 0;             ///< global steps completed
  uint64_t epoch = 0;            ///< epoch the next step belongs to (0-based)
  uint64_t seed = 0;
  uint64_t steps_per_epoch = 0;
  int ranks = 1;                 ///< rank count that wrote it (exact resume needs the same)
  int nodes = 0;                 ///< nodes (model copies) of that job; 0 = not recorded
  int ranks_per_node = 0;        ///< ranks on its largest node; 0 = not recorded
  std::string layout;            ///< ranks per node in rank order, e.g. "2+2"; "" = not recorded
  double seconds = 0;            ///< training wall time so far
  double epoch_recon_sq = 0;     ///< partial-epoch counters (resume mid-epoch)
  double epoch_samples = 0;
  std::string config;            ///< 'name = value' lines, readable as a --config file
                                 ///< (never output paths: those are the attributes below)
  std::string checkpoint_file;   ///< absolute path this checkpoint was written to
  std::string checkpoint_pattern;///< --checkpoint as given, absolute (may hold '{epoch}')
  std::string metrics_file;      ///< absolute --metrics of the run, "" if none
  double best_pll = -HUGE_VAL;   ///< --keep-best: best validation pseudo-log-likelihood
  uint64_t best_epoch = 0;       ///< ... and its epoch (0 = none yet)
  std::vector<float> momentum;   ///< Params layout
  std::vector<uint8_t> chains;   ///< [C, V] binary chain states, empty unless PCD
  std::vector<uint8_t> pt_chains;///< [K, C, V] tempered replicas, empty unless --pt
  std::vector<double> pt_betas;  ///< [K] their inverse temperatures
  std::vector<double> pt_swaps;  ///< [2, K-1] accepted, then proposed swaps this epoch
};

/// Writes model (+ training state when `state` is not null) atomically to `path`.
void write_checkpoint(const std::string& path, const Params& p, const TrainState* state);

/// Reads /model; checks format, version and shapes. Throws UsageError naming the file.
ParamBuffer read_model(const std::string& path);

bool has_train_state(const std::string& path);
TrainState read_train_state(const std::string& path, size_t V, size_t H);
/// Only the stored configuration ('name = value' lines) of a resumable checkpoint.
std::string read_train_state_config(const std::string& path);

/// The run's output paths stored in a checkpoint (empty when absent: older files).
struct StoredOutputs {
  std::string checkpoint_file, checkpoint_pattern, metrics_file;
};
StoredOutputs read_stored_outputs(const std::string& path);

}  // namespace rbm
