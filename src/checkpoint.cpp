#include "rbm/checkpoint.hpp"

#include <cmath>
#include <cstdint>

#include "rbm/atomic_file.hpp"
#include "rbm/errors.hpp"
#include "rbm/h5.hpp"

namespace rbm {

void write_checkpoint(const std::string& path, const Params& p, const TrainState* st) {
  AtomicFile out(path);
  try {
    h5::Id f = h5::create_file(out.temp_path());
    h5::write_array(f, "/model/weights", p.W.data(), {p.V, p.H});
    h5::write_array(f, "/model/visible_bias", p.b.data(), {p.V});
    h5::write_array(f, "/model/hidden_bias", p.c.data(), {p.H});
    h5::write_attr(f, "format", std::string(kCheckpointFormat));
    h5::write_attr(f, "format_version", int64_t{kCheckpointVersion});
    if (st) {
      h5::write_array(f, "/train/momentum", st->momentum.data(), {st->momentum.size()});
      if (!st->chains.empty())
        h5::write_array(f, "/train/chains", st->chains.data(), {st->chains.size() / p.V, p.V},
                        {256, 4});
      if (!st->pt_chains.empty()) {
        const hsize_t K = st->pt_betas.size(), V = p.V, C = st->pt_chains.size() / (K * V);
        h5::write_array(f, "/train/pt_chains", st->pt_chains.data(), {K, C, V}, {1, 4});
        h5::write_array(f, "/train/pt_betas", st->pt_betas.data(), {K});
        h5::write_array(f, "/train/pt_swaps", st->pt_swaps.data(), {2, K - 1});
      }
      h5::Id g = h5::open_object(f, "/train");
      h5::write_attr(g, "step", static_cast<int64_t>(st->step));
      h5::write_attr(g, "epoch", static_cast<int64_t>(st->epoch));
      h5::write_attr(g, "seed", static_cast<int64_t>(st->seed));
      h5::write_attr(g, "steps_per_epoch", static_cast<int64_t>(st->steps_per_epoch));
      h5::write_attr(g, "ranks", static_cast<int64_t>(st->ranks));
      h5::write_attr(g, "nodes", static_cast<int64_t>(st->nodes));
      h5::write_attr(g, "ranks_per_node", static_cast<int64_t>(st->ranks_per_node));
      h5::write_attr(g, "layout", st->layout);
      h5::write_attr(g, "seconds", st->seconds);
      h5::write_attr(g, "epoch_recon_sq", st->epoch_recon_sq);
      h5::write_attr(g, "epoch_samples", st->epoch_samples);
      h5::write_attr(g, "config", st->config);
      h5::write_attr(g, "checkpoint_file", st->checkpoint_file);
      h5::write_attr(g, "checkpoint_pattern", st->checkpoint_pattern);
      h5::write_attr(g, "metrics_file", st->metrics_file);
      h5::write_attr(g, "best_pll", std::isfinite(st->best_pll) ? st->best_pll : -1e300);
      h5::write_attr(g, "best_epoch", static_cast<int64_t>(st->best_epoch));
    }
    h5::close_written(f, out.temp_path());
  } catch (const Error& e) {  // a full disk, say: name the file in the one line
    const std::string msg = e.what();
    throw Error(msg.find(path) != std::string::npos ? msg : path + ": " + msg, e.code());
  }
  out.commit();
}

ParamBuffer read_model(const std::string& path) {
  h5::Id f = h5::open_file(path);
  if (!h5::has_attr(f, "format") || h5::read_attr_string(f, "format") != kCheckpointFormat)
    throw UsageError(path + ": not an rbm checkpoint (root attribute format = \"" +
                     kCheckpointFormat + "\" missing)");
  const int64_t version = h5::read_attr_int(f, "format_version");
  if (version != kCheckpointVersion)
    throw UsageError(fmt(path, ": format_version ", version, " is not supported (this build reads ",
                         kCheckpointVersion, ")"));
  std::vector<hsize_t> dw, db, dc;
  std::vector<float> w = h5::read_array<float>(f, "/model/weights", path, &dw);
  std::vector<float> b = h5::read_array<float>(f, "/model/visible_bias", path, &db);
  std::vector<float> c = h5::read_array<float>(f, "/model/hidden_bias", path, &dc);
  if (dw.size() != 2 || db.size() != 1 || dc.size() != 1 || db[0] != dw[0] || dc[0] != dw[1])
    throw UsageError(path + ": /model shapes disagree (expected weights [V, H], visible_bias [V], "
                            "hidden_bias [H])");
  ParamBuffer pb(dw[0], dw[1]);
  std::copy(w.begin(), w.end(), pb.view.W.data());
  std::copy(b.begin(), b.end(), pb.view.b.data());
  std::copy(c.begin(), c.end(), pb.view.c.data());
  return pb;
}

bool has_train_state(const std::string& path) {
  h5::Id f = h5::open_file(path);
  return h5::exists(f, "/train/momentum");
}

namespace {
// Integer attribute of /train within [lo, hi], else UsageError naming the file.
int64_t attr_in(hid_t g, const char* name, int64_t lo, int64_t hi, const std::string& path) {
  int64_t v = 0;
  try {
    v = h5::read_attr_int(g, name);
  } catch (const Error& e) {
    throw UsageError(fmt(path, ": /train: ", e.what(), " (not a checkpoint rbm_dist wrote?)"));
  }
  if (v < lo || v > hi)
    throw UsageError(fmt(path, ": /train attribute ", name, " = ", v, " is out of range [", lo,
                         ", ", hi, "] (a damaged or edited checkpoint)"));
  return v;
}
// Finite, non-negative number attribute of /train.
double attr_nonneg(hid_t g, const char* name, const std::string& path) {
  double v = 0;
  try {
    v = h5::read_attr_double(g, name);
  } catch (const Error& e) {
    throw UsageError(fmt(path, ": /train: ", e.what()));
  }
  if (!std::isfinite(v) || v < 0)
    throw UsageError(fmt(path, ": /train attribute ", name, " = ", v,
                         " must be a finite number >= 0 (a damaged or edited checkpoint)"));
  return v;
}
}  // namespace

TrainState read_train_state(const std::string& path, size_t V, size_t H) {
  h5::Id f = h5::open_file(path);
  if (!h5::exists(f, "/train/momentum"))
    throw UsageError(path + ": has no /train state (a model-only file cannot be resumed)");
  TrainState st;
  st.momentum = h5::read_array<float>(f, "/train/momentum", path);
  if (st.momentum.size() != Params::count(V, H))
    throw UsageError(path + ": /train/momentum does not match the model shape");
  for (float m : st.momentum)
    if (!std::isfinite(m))
      throw UsageError(path + ": /train/momentum holds NaN or infinite values (a diverged or "
                              "damaged checkpoint; start again or resume an earlier one)");
  if (h5::exists(f, "/train/chains")) {
    std::vector<hsize_t> dims;
    st.chains = h5::read_array<uint8_t>(f, "/train/chains", path, &dims);
    if (dims.size() != 2 || dims[1] != V)
      throw UsageError(path + ": /train/chains is not [C, V]");
    for (uint8_t x : st.chains)
      if (x > 1)
        throw UsageError(fmt(path, ": /train/chains holds the value ", int{x},
                             "; persistent chains are binary (0 or 1)"));
  }
  if (h5::exists(f, "/train/pt_chains")) {
    std::vector<hsize_t> dims, db, ds;
    st.pt_chains = h5::read_array<uint8_t>(f, "/train/pt_chains", path, &dims);
    st.pt_betas = h5::read_array<double>(f, "/train/pt_betas", path, &db);
    st.pt_swaps = h5::read_array<double>(f, "/train/pt_swaps", path, &ds);
    if (dims.size() != 3 || dims[2] != V || db.size() != 1 || db[0] != dims[0] || dims[0] < 2 ||
        ds.size() != 2 || ds[0] != 2 || ds[1] != dims[0] - 1)
      throw UsageError(path + ": /train/pt_chains, pt_betas, pt_swaps are not [K, C, V], [K], "
                              "[2, K-1]");
    for (uint8_t x : st.pt_chains)
      if (x > 1)
        throw UsageError(fmt(path, ": /train/pt_chains holds the value ", int{x},
                             "; tempered replicas are binary (0 or 1)"));
    for (double x : st.pt_swaps)
      if (!(x >= 0 && std::isfinite(x)))
        throw UsageError(path + ": /train/pt_swaps holds a negative or non-finite count");
  }
  h5::Id g = h5::open_object(f, "/train");
  // Ranges: at most 2^40 steps per epoch and 10^9 epochs, so step fits comfortably.
  constexpr int64_t kMaxSpe = int64_t{1} << 40, kMaxEpochs = 1000000000;
  st.steps_per_epoch = static_cast<uint64_t>(attr_in(g, "steps_per_epoch", 1, kMaxSpe, path));
  const int64_t spe = static_cast<int64_t>(st.steps_per_epoch);
  st.step = static_cast<uint64_t>(attr_in(g, "step", 0, spe * kMaxEpochs, path));
  st.epoch = static_cast<uint64_t>(attr_in(g, "epoch", 0, kMaxEpochs, path));
  if (st.epoch != st.step / st.steps_per_epoch)
    throw UsageError(fmt(path, ": /train attributes disagree: step ", st.step, " with ",
                         st.steps_per_epoch, " steps per epoch is epoch ",
                         st.step / st.steps_per_epoch, ", not ", st.epoch,
                         " (a damaged or edited checkpoint)"));
  st.seed = static_cast<uint64_t>(attr_in(g, "seed", 0, INT64_MAX, path));
  st.ranks = static_cast<int>(attr_in(g, "ranks", 1, 1 << 24, path));
  // The node layout (absent in checkpoints written before it was recorded: 0, "").
  if (h5::has_attr(g, "nodes")) st.nodes = static_cast<int>(attr_in(g, "nodes", 1, st.ranks, path));
  if (h5::has_attr(g, "ranks_per_node"))
    st.ranks_per_node = static_cast<int>(attr_in(g, "ranks_per_node", 1, st.ranks, path));
  if (h5::has_attr(g, "layout")) {
    try {
      st.layout = h5::read_attr_string(g, "layout");
    } catch (const Error& e) {
      throw UsageError(fmt(path, ": /train: ", e.what()));
    }
  }
  st.seconds = attr_nonneg(g, "seconds", path);
  st.epoch_recon_sq = attr_nonneg(g, "epoch_recon_sq", path);
  st.epoch_samples = attr_nonneg(g, "epoch_samples", path);
  try {
    st.config = h5::read_attr_string(g, "config");
  } catch (const Error& e) {
    throw UsageError(fmt(path, ": /train: ", e.what()));
  }
  if (h5::has_attr(g, "best_epoch")) {  // written since --keep-best exists
    st.best_epoch = static_cast<uint64_t>(attr_in(g, "best_epoch", 0, kMaxEpochs, path));
    st.best_pll = h5::read_attr_double(g, "best_pll");
    if (st.best_epoch == 0 || !std::isfinite(st.best_pll) || st.best_pll < -1e299)
      st.best_pll = -HUGE_VAL;
  }
  const StoredOutputs out = read_stored_outputs(path);
  st.checkpoint_file = out.checkpoint_file;
  st.checkpoint_pattern = out.checkpoint_pattern;
  st.metrics_file = out.metrics_file;
  return st;
}

StoredOutputs read_stored_outputs(const std::string& path) {
  h5::Id f = h5::open_file(path);
  StoredOutputs out;
  if (!h5::exists(f, "/train")) return out;
  h5::Id g = h5::open_object(f, "/train");
  auto get = [&](const char* name) {
    try {
      return h5::has_attr(g, name) ? h5::read_attr_string(g, name) : std::string();
    } catch (const Error& e) {
      throw UsageError(fmt(path, ": /train: ", e.what()));
    }
  };
  out.checkpoint_file = get("checkpoint_file");
  out.checkpoint_pattern = get("checkpoint_pattern");
  out.metrics_file = get("metrics_file");
  return out;
}

std::string read_train_state_config(const std::string& path) {
  read_model(path);  // checks the format first
  h5::Id f = h5::open_file(path);
  if (!h5::exists(f, "/train/momentum"))
    throw UsageError(path + ": has no /train state (a model-only file cannot be resumed)");
  h5::Id g = h5::open_object(f, "/train");
  try {
    return h5::read_attr_string(g, "config");
  } catch (const Error& e) {
    throw UsageError(fmt(path, ": /train: ", e.what()));
  }
}

}  // namespace rbm
