#include "rbm/trainer.hpp"

#include <mpi.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <tuple>
#include <sstream>

#include "rbm/atomic_file.hpp"
#include "rbm/blas_backend.hpp"
#include "rbm/errors.hpp"
#include "rbm/eval.hpp"
#include "rbm/paths.hpp"
#include "trainer_internal.hpp"

namespace rbm {

namespace po = cli::po;
using namespace trainer_detail;


// ---------------------------------------------------------------------------
// Signals: SIGTERM / SIGUSR1 set a flag that is folded into the step's reduction.
// ---------------------------------------------------------------------------
namespace {
volatile std::sig_atomic_t g_stop_signal = 0;
extern "C" void on_stop_signal(int sig) { g_stop_signal = sig; }


uint64_t fnv1a(const float* data, size_t n) {
  const auto* p = reinterpret_cast<const unsigned char*>(data);
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < n * sizeof(float); ++i) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

}  // namespace

// ---------------------------------------------------------------------------
Trainer::Trainer(const MpiEnv& env, const TrainConfig& cfg, std::string config_text)
    : env_(env), cfg_(cfg), config_text_(std::move(config_text)), rng_(cfg.seed),
      binarizer_(parse_binarize(cfg.binarize), rng_) {
  // --pt implies persistent chains: every PCD path (chains, their checkpoint, the
  // reconstruction monitor every 10th step) applies; the stored configuration keeps
  // the options as given.
  if (cfg_.pt) {
    cfg_.pcd = true;
    for (double b : pt_betas(static_cast<int>(cfg_.pt), cfg_.pt_min_beta))
      betas_.push_back(static_cast<float>(b));
    swap_accepted_.assign(cfg_.pt - 1, 0.0);
    swap_tried_.assign(cfg_.pt - 1, 0.0);
  }
  n_counters_ = kCounters + (cfg_.pt ? cfg_.pt - 1 : 0);
}

void Trainer::setup() {
  // Checks every rank makes identically: one message from rank 0, exit code 2.
  DatasetInfo info;
  std::string mpath = cfg_.monitor_path;
  agree(env_, [&] {
    info = inspect_dataset(cfg_.data, cfg_.train_path);
    if (cfg_.batch > info.rows)
      throw UsageError(fmt("--batch-size ", cfg_.batch, " is larger than the dataset (",
                           info.rows, " images in ", cfg_.data, ":", cfg_.train_path,
                           "): use --batch-size ", info.rows, " or less"));
    if (info.rows < static_cast<size_t>(env_.size))
      throw UsageError(fmt(cfg_.data, ": ", cfg_.train_path, " has ", info.rows,
                           " rows but the job has ", env_.size, " ranks (run with at most ",
                           info.rows, " ranks)"));
    if (std::min(cfg_.shards, info.rows) < static_cast<size_t>(env_.size))
      throw UsageError(fmt("--shards ", cfg_.shards, ": fewer virtual shards than the job's ",
                           env_.size, " ranks; every rank needs at least one (use --shards ",
                           env_.size, " or a multiple of it, at most the ", info.rows,
                           " rows; the batches, and so the model, depend on --shards)"));
    if (env_.root()) {  // only rank 0 writes: it alone checks the outputs, before any work
      const NamedPath ck{"--checkpoint", cfg_.checkpoint}, metrics{"--metrics", cfg_.metrics};
      const NamedPath data{"--data", cfg_.data}, resume{"--resume", cfg_.resume};
      check_output_folder(ck);
      if (!cfg_.metrics.empty()) check_output_folder(metrics);
      // The checkpoint may be the file resumed from (that run continues); nothing else.
      const NamedPath first{"--checkpoint", checkpoint_file_for_epoch(1)};
      const NamedPath init{"--init-from", cfg_.init_from};
      check_outputs_differ({first}, {data, init});
      check_outputs_differ({metrics}, {data, resume, first, init});
      if (cfg_.keep_best)
        check_outputs_differ({{"--keep-best", best_file()}}, {data, resume, first, metrics, init});
      // Never replace another run's files: a fresh run (or a resume writing elsewhere)
      // needs --force to overwrite an existing checkpoint or metrics file.
      if (!cfg_.force) {
        for (const NamedPath& out : {first, metrics}) {
          if (out.path.empty() || !std::filesystem::exists(out.path)) continue;
          if (!cfg_.resume.empty() &&
              (same_file(out.path, cfg_.resume) || out.flag == "--metrics" ||
               cfg_.checkpoint.find("{epoch}") != std::string::npos))
            continue;  // continuing F (its own metrics, its '{epoch}' series)
          throw UsageError(fmt(out.flag, " ", out.path, " already exists: continue that run with "
                               "--resume ", out.flag == "--metrics" ? cfg_.checkpoint : out.path,
                               ", or replace it with --force"));
        }
      }
    }
    if (mpath.empty()) mpath = monitor_images_path(cfg_.data);
    if (cfg_.keep_best && mpath != schema::valid_images)
      throw UsageError(fmt("--keep-best selects an epoch on the monitor images, and ", cfg_.data,
                           " has no /validation split (selecting on ", mpath.empty() ? "nothing" : mpath,
                           " would be selecting on test data): convert with mnist2h5 "
                           "--validation-size K"));
    if (!mpath.empty()) {
      DatasetInfo m = inspect_dataset(cfg_.data, mpath);
      if (m.dim != info.dim)
        throw UsageError(fmt(cfg_.data, ": ", mpath, " has ", m.dim, " pixels per image but ",
                             cfg_.train_path, " has ", info.dim));
    }
  });
  check_same_configuration();
  if (env_.root())
    for (const std::string& f : {cfg_.checkpoint, cfg_.metrics})
      if (!f.empty())
        for (const std::string& stale : remove_stale_temporaries(f))
          std::printf("note: removed %s, left by a writer that no longer runs\n", stale.c_str());
  V_ = info.dim;
  H_ = cfg_.hidden;
  // --drop-last on: floor(N/B) steps of exactly B samples; the epoch's last N mod B
  // positions are left out (other rows every epoch with --shuffle epoch).
  // --drop-last off: ceil(N/B) steps, the last one holds N - (steps - 1) B samples.
  const bool drop_last = cfg_.drop_last == "on";
  steps_per_epoch_ = drop_last ? info.rows / cfg_.batch : (info.rows + cfg_.batch - 1) / cfg_.batch;
  epoch_positions_ = drop_last ? steps_per_epoch_ * cfg_.batch : info.rows;
  Cg_ = cfg_.pcd ? (cfg_.chains ? cfg_.chains : cfg_.batch) : 0;

  read_data(mpath);
  cfg_.monitor_path = mpath;
  monitor_split_ = mpath == schema::valid_images ? "valid"
                   : mpath == schema::test_images ? "test"
                                                  : mpath;
  if (env_.root() && have_monitor_ && mpath == schema::test_images)
    std::printf("warning: %s has no /validation images: the monitor (free energy, "
                "pseudo-likelihood) uses /test, labelled 'test'; never pick an epoch or a "
                "setting by it (mnist2h5 keeps a validation split by default)\n",
                cfg_.data.c_str());

  prec_ = parse_precision(cfg_.precision);
  try {
    // With bf16 the node also shares the bf16 copy of W that the update pass writes.
    shared_ = std::make_unique<NodeShared>(Params::count(V_, H_), n_counters_, cfg_.node_size,
                                           prec_ == Precision::bf16 ? V_ * H_ : 0);
  } catch (const NodeShared::OutOfMemory& e) {
    throw CollectiveError(fmt("cannot allocate ", e.bytes >> 20, " MB for a ", V_, "x", H_,
                              " model: out of memory (", NodeShared::available_memory_bytes() >> 20,
                              " MB available on this node; use fewer --hidden units or ranks "
                              "per node)"),
                          exit_code::runtime);
  }
  {  // the node layout, e.g. "2+2" (recorded in checkpoints; a resume compares it)
    int mine = shared_->leader() ? shared_->local_size() : 0;
    std::vector<int> all(env_.root() ? static_cast<size_t>(env_.size) : 0);
    MPI_Gather(&mine, 1, MPI_INT, all.data(), 1, MPI_INT, 0, MPI_COMM_WORLD);
    for (int n : all)
      if (n > 0) {
        if (!layout_.empty()) layout_ += '+';
        layout_ += std::to_string(n);
        max_local_ = std::max(max_local_, n);
      }
  }
  theta_ = Params(shared_->theta(), V_, H_);
  grad_ = Params(shared_->grad_slot(), V_, H_);
  momentum_ = shared_->momentum();
  counters_ = shared_->grad_slot() + theta_.size();
  if (cfg_.pcd) {
    ShardLayout cl(Cg_, env_.rank, env_.size);
    chain_index_.resize(cl.local_rows());
    for (size_t l = 0; l < cl.local_rows(); ++l) chain_index_[l] = cl.global_row(l);
    chains_.resize(V_, cl.local_rows());
    if (cfg_.pt) replicas_.resize(V_, static_cast<Eigen::Index>(cfg_.pt * cl.local_rows()));
  }
  if (!cfg_.resume.empty())
    resume_from(cfg_.resume);
  else if (!cfg_.init_from.empty())
    init_from_model(cfg_.init_from);
  else
    init_params();
  if (prec_ == Precision::bf16) {  // the first bf16 copy of W: each rank its segment
    const size_t nW = V_ * H_, a = std::min(shared_->segment_begin(), nW),
                 b = std::min(shared_->segment_end(), nW);
    if (b > a) bf16::to_bf16(theta_.data() + a, shared_->w16() + a, b - a);
    shared_->barrier();
    ws_.w_shared = shared_->w16();
  }
}

/// Every rank must run with rank 0's effective configuration: an MPMD launch or a
/// mixed-up script could start ranks with other options, and with one model copy per
/// node the parameter checksum (--check-consistency) cannot see that. Exit 2 naming
/// the first option that differs.
void Trainer::check_same_configuration() const {
  std::string root_text = config_text_;
  broadcast_string(root_text);
  agree(env_, [&] {
    if (config_text_ == root_text) return;
    std::istringstream mine(config_text_), root(root_text);
    std::string a, b;
    while (std::getline(mine, a) && std::getline(root, b) && a == b) {
    }
    throw UsageError(fmt("rank ", env_.rank, " was started with other options than rank 0: '",
                         a, "' vs '", b, "' (every rank must run the same command)"));
  });
}




// ---------------------------------------------------------------------------
// Data: each rank holds its virtual shards (one contiguous block of rows, shard.hpp);
// its part of global mini-batch s is the batch's positions that fall in its shards.
// ---------------------------------------------------------------------------
/// Each rank reads only its virtual shards: ONE contiguous block of about N/P rows (a
/// failure here is local -> MPI_Abort). Rank 0 alone reads the monitor rows (at most
/// --monitor-size) and scatters them in contiguous parts. Rank 0 reports the bytes read.
void Trainer::read_data(const std::string& mpath) {
  const DatasetInfo info = inspect_dataset(cfg_.data, cfg_.train_path);
  shards_ = VirtualShards(info.rows, cfg_.shards, env_.rank, env_.size);
  rule_ = BatchRule(shards_, cfg_.seed, cfg_.shuffle == "epoch");
  train_ = read_row_block(cfg_.data, cfg_.train_path, shards_.row_begin(), shards_.row_end());

  unsigned long long m = 0, monitor_bytes = 0;
  RowBlock all;
  if (!mpath.empty()) {
    agree(env_, [&] {
      if (!env_.root()) return;
      const DatasetInfo mi = inspect_dataset(cfg_.data, mpath);
      all = read_row_block(cfg_.data, mpath, 0, std::min(cfg_.monitor_size, mi.rows));
      m = all.rows();
      monitor_bytes = all.bytes_read;
    });
    MPI_Bcast(&m, 1, MPI_UNSIGNED_LONG_LONG, 0, MPI_COMM_WORLD);
  }
  monitor_rows_ = m;
  have_monitor_ = m > 0;
  if (have_monitor_) {
    const auto P = static_cast<size_t>(env_.size);
    auto part = [&](size_t r) { return static_cast<size_t>(m) * r / P; };
    std::vector<int> counts(P), displs(P);
    for (size_t r = 0; r < P; ++r) {
      counts[r] = static_cast<int>(part(r + 1) - part(r));
      displs[r] = static_cast<int>(part(r));
    }
    MPI_Datatype row;
    MPI_Type_contiguous(static_cast<int>(V_), MPI_UINT8_T, &row);
    MPI_Type_commit(&row);
    const auto me = static_cast<size_t>(env_.rank);
    monitor_.first = part(me);
    monitor_.total = m;
    monitor_.dim = V_;
    monitor_.pixels.resize((part(me + 1) - part(me)) * V_);
    MPI_Scatterv(all.pixels.data(), counts.data(), displs.data(), row, monitor_.pixels.data(),
                 counts[me], row, 0, MPI_COMM_WORLD);
    MPI_Type_free(&row);
  }

  // Bytes read from the file by each rank (kernel's count, /proc/thread-self/io).
  unsigned long long mine = train_.bytes_read, mx = 0, mn = 0, sum = 0;
  MPI_Reduce(&mine, &mx, 1, MPI_UNSIGNED_LONG_LONG, MPI_MAX, 0, MPI_COMM_WORLD);
  MPI_Reduce(&mine, &mn, 1, MPI_UNSIGNED_LONG_LONG, MPI_MIN, 0, MPI_COMM_WORLD);
  MPI_Reduce(&mine, &sum, 1, MPI_UNSIGNED_LONG_LONG, MPI_SUM, 0, MPI_COMM_WORLD);
  if (env_.root() && cfg_.report) {  // (rbm_bench keeps its table clean)
    const size_t S = shards_.count(), P = static_cast<size_t>(env_.size);
    auto mb = [](double bytes) { return fmt_fixed(bytes / 1e6, 0, 3); };
    auto range = [](size_t lo, size_t hi) { return lo == hi ? fmt(lo) : fmt(lo, "-", hi); };
    std::printf("data: %s %zu rows in %zu virtual shards of %s rows, %s per rank; "
                "read from the file per rank: max %s MB, min %s MB, total %s MB (stored: %s MB%s)",
                cfg_.train_path.c_str(), info.rows, S,
                range(info.rows / S, (info.rows + S - 1) / S).c_str(),
                range(S / P, (S + P - 1) / P).c_str(), mb(static_cast<double>(mx)).c_str(),
                mb(static_cast<double>(mn)).c_str(), mb(static_cast<double>(sum)).c_str(),
                mb(static_cast<double>(info.stored_bytes)).c_str(),
                info.chunk_rows ? fmt(", chunks of ", info.chunk_rows, " rows").c_str() : "");
    if (have_monitor_)
      std::printf("; monitor %s: %llu rows read by rank 0 (%s MB)", mpath.c_str(), m,
                  mb(static_cast<double>(monitor_bytes)).c_str());
    std::printf("\n");
    std::fflush(stdout);
  }
}

/// This epoch's order of the rows of each shard this rank owns (perm_, local rows).
void Trainer::shuffle_for_epoch(uint64_t epoch) {
  if (perm_epoch_ == epoch) return;
  perm_epoch_ = epoch;
  perm_.resize(train_.rows());
  const size_t a = shards_.first_shard(env_.rank), b = shards_.first_shard(env_.rank + 1);
  for (size_t k = a; k < b; ++k) {
    const size_t off = shards_.start(k) - train_.first;
    uint32_t* o = perm_.data() + off;
    rule_.shard_order(epoch, k, o);
    for (size_t i = 0; i < shards_.shard_rows(k); ++i) o[i] += static_cast<uint32_t>(off);
  }
}

void Trainer::binarize_rows(const RowBlock& s, const std::vector<uint32_t>& local,
                            uint64_t rng_step, Matrix& X, std::vector<uint64_t>* index) const {
  const size_t n = local.size();
  X.resize(V_, n);
  if (index) index->resize(n);
  for (size_t k = 0; k < n; ++k) {
    const size_t l = local[k];
    const uint64_t g = s.first + l;
    if (index) (*index)[k] = g;
    binarizer_.row(s.row(l), V_, 0, rng_step, g, X.col(k).data());
  }
}

void Trainer::load_batch(uint64_t t, Matrix& X, std::vector<uint64_t>& index) const {
  const uint64_t epoch = t / steps_per_epoch_, s = t % steps_per_epoch_;
  const size_t p0 = s * cfg_.batch, p1 = std::min(epoch_positions_, p0 + cfg_.batch);
  batch_pos_.clear();
  rule_.owned(epoch, p0, p1, batch_pos_);
  batch_rows_.resize(batch_pos_.size());
  for (size_t k = 0; k < batch_pos_.size(); ++k)
    batch_rows_[k] = perm_[shards_.start(batch_pos_[k].shard) - train_.first + batch_pos_[k].index];
  binarize_rows(train_, batch_rows_, t, X, &index);
}

// ---------------------------------------------------------------------------
// The training step.
// ---------------------------------------------------------------------------
bool Trainer::step(uint64_t t) {
  const double t_start = now();
  const uint64_t epoch = t / steps_per_epoch_, s = t % steps_per_epoch_;
  shuffle_for_epoch(epoch);
  const size_t Bg = std::min(cfg_.batch, epoch_positions_ - s * cfg_.batch);

  load_batch(t, X_, index_);  // X_ [V, B]: this rank's part of global batch s
  // PCD's reconstruction error costs an extra product p(v|h0): it is measured on every
  // kPcdReconEvery-th step of the epoch and weighted by the samples of the steps it
  // stands for (the rest of its group), so the epoch's mean keeps its denominator.
  constexpr uint64_t kPcdReconEvery = 10;
  const bool recon = !cfg_.pcd || s % kPcdReconEvery == 0;
  CdConfig cd{cfg_.cd_k, cfg_.pcd, t, Bg, std::max<size_t>(Cg_, 1), recon};
  if (cfg_.pt) {  // the tempered replicas advance; their beta = 1 block is the PCD chains
    float* accepted = counters_ + kCounters;  // [K-1], summed by the step's reduction
    std::fill_n(accepted, cfg_.pt - 1, 0.0f);
    pt_update(theta_, betas_, cfg_.cd_k, t, Cg_, chain_index_.data(), rng_, replicas_, pt_ws_,
              accepted);
    chains_ = replicas_.leftCols(chains_.cols());
    cd.sweep_chains = false;
  }
  // --overlap on across nodes (fp32): the weight rows come bucket by bucket below.
  const bool overlap = cfg_.overlap == "on" && shared_->nodes() > 1 && prec_ == Precision::fp32;
  const CdCounters cnt =
      overlap ? cd_statistics(theta_, cd, X_, index_.data(), cfg_.pcd ? &chains_ : nullptr,
                              chain_index_.data(), rng_, ws_.f32, grad_)
              : cd_gradient_prec(prec_, theta_, cd, X_, index_.data(), cfg_.pcd ? &chains_ : nullptr,
                                 chain_index_.data(), rng_, ws_, grad_);  // grad_ = g
  double recon_weight = 1.0;
  if (cfg_.pcd && recon) {
    const size_t n = epoch_positions_, g0 = s * cfg_.batch;
    const size_t g1 = std::min<size_t>(n, (s + kPcdReconEvery) * cfg_.batch);
    recon_weight = static_cast<double>(g1 - g0) / static_cast<double>(Bg);
  }
  counters_[kReconSq] = static_cast<float>(cnt.recon_sq * recon_weight);
  counters_[kSamples] = static_cast<float>(X_.cols());
  counters_[kStop] = g_stop_signal ? 1.0f : 0.0f;

  // One fused reduction of [g | counters] over all ranks; each local rank then updates
  // its segment of the node's parameters: m = mu m + lr (g - wd W); theta += m.
  const SgdHyper hyper = hyper_for_epoch(epoch);
  auto update = [&](size_t a, size_t b, const float* const* g, int ng) {
    return fused_update(theta_.data(), momentum_, g, ng, hyper, a, b, shared_->w16());
  };
  double tc = now();
  uint32_t nonfinite = 0;
  if (!overlap) {
    nonfinite = shared_->reduce(update);
  } else {
    // Bucket 0: [b | c | counters] (ready now); buckets 1..J: J blocks of rows of dW, each
    // a contiguous range of the row-major [V, H] buffer, of at least 32768 floats.
    const size_t J = std::clamp<size_t>(V_ * H_ / 32768, 1, 16), rows = (V_ + J - 1) / J;
    const size_t n = theta_.size() + n_counters_;
    auto row_of = [&](size_t j) { return std::min(V_, (j - 1) * rows); };
    double compute = 0;
    nonfinite = shared_->reduce_overlapped(
        J + 1,
        [&](size_t j) {
          return j == 0 ? std::pair{V_ * H_, n} : std::pair{row_of(j) * H_, row_of(j + 1) * H_};
        },
        [&](size_t j) {
          const double t0 = now();
          cd_weight_rows(ws_.f32, grad_, row_of(j), row_of(j + 1));
          compute += now() - t0;
        },
        update);
    tc += compute;  // the reduction's time is what the products did not hide
  }
  reduce_seconds_ += now() - tc;
  comm_seconds_ += shared_->take_comm_seconds();
  if (nonfinite) throw diverged(t, epoch);

  const float* sum = shared_->sum() + theta_.size();  // the summed counters
  epoch_.recon_sq += sum[kReconSq];
  epoch_.samples += sum[kSamples];
  epoch_.timed_samples += sum[kSamples];
  for (size_t r = 0; r + 1 < cfg_.pt; ++r) {
    swap_accepted_[r] += sum[kCounters + r];
    if (pt_pair_attempted(t, r)) swap_tried_[r] += static_cast<double>(Cg_);
  }
  if (cfg_.check_consistency && (t + 1) % cfg_.check_consistency == 0) check_consistency(t);
  step_seconds_ += now() - t_start;
  return sum[kStop] > 0;
}

/// The learning rate, momentum and weight decay in force in `epoch`.
SgdHyper Trainer::hyper_for_epoch(uint64_t epoch) const {
  SgdHyper h;
  // lr_e = lr / (1 + D e) * (linear ? 1 - e/E : 1),  e = 0 .. E-1
  const double e = static_cast<double>(epoch);
  const double shape = cfg_.lr_schedule == "linear"
                           ? 1.0 - e / static_cast<double>(std::max<size_t>(cfg_.epochs, 1))
                           : 1.0;
  h.lr = static_cast<float>(cfg_.lr / (1.0 + cfg_.lr_decay * e) * std::max(shape, 0.0));
  h.momentum = static_cast<float>(epoch < cfg_.momentum_epochs ? cfg_.initial_momentum
                                                               : cfg_.momentum);
  h.weight_decay = static_cast<float>(cfg_.weight_decay);
  h.n_weights = V_ * H_;
  return h;
}

CollectiveError Trainer::diverged(uint64_t t, uint64_t epoch) const {
  return CollectiveError(
      fmt("step ", t + 1, " (epoch ", epoch + 1, "): the parameters became NaN or infinite; "
          "the learning rate ", cfg_.lr, " is probably too large (try --lr ", cfg_.lr / 10,
          "); the last good checkpoint ", cfg_.checkpoint, " was kept"),
      exit_code::diverged);
}

void Trainer::check_consistency(uint64_t t) {
  unsigned long long h = fnv1a(theta_.data(), theta_.size()), lo = h, hi = h;
  MPI_Allreduce(MPI_IN_PLACE, &lo, 1, MPI_UNSIGNED_LONG_LONG, MPI_MIN, MPI_COMM_WORLD);
  MPI_Allreduce(MPI_IN_PLACE, &hi, 1, MPI_UNSIGNED_LONG_LONG, MPI_MAX, MPI_COMM_WORLD);
  if (lo != hi)
    throw CollectiveError(fmt("step ", t + 1, ": the ranks' parameters differ (checksums ", lo,
                              " and ", hi, "); were all ranks started with the same options "
                              "and binary?"),
                          exit_code::runtime);
}













void install_stop_handlers() {
  std::signal(SIGTERM, on_stop_signal);
  std::signal(SIGUSR1, on_stop_signal);
  // When a rank on another node dies, a write to its socket must fail with EPIPE inside
  // Open MPI's TCP transport, not kill THIS rank with SIGPIPE: then mpirun reported the
  // survivor ("... on node <surviving node> exited on signal 13 (Broken pipe)") instead
  // of the node that was lost (seen once in tests/multinode/test_node_loss.sh).
  std::signal(SIGPIPE, SIG_IGN);
}

int Trainer::run() {
  start_time_ = now();
  const uint64_t total = cfg_.epochs * steps_per_epoch_;
  if (env_.root() && !cfg_.metrics.empty() && cfg_.resume.empty())
    std::ofstream(cfg_.metrics, std::ios::trunc);  // a fresh run (checked: --force or new)
  if (!cfg_.resume.empty()) trim_metrics(start_step_ / steps_per_epoch_);
  const bool live = env_.root() && live_progress();
  double train_seconds = 0, last_print = 0;
  for (uint64_t t = start_step_; t < total; ++t) {
    const double t0 = now();
    const bool stop = step(t);
    train_seconds += now() - t0;
    const uint64_t epoch = t / steps_per_epoch_;
    if (live && now() - last_print > 0.5) {
      last_print = now();
      const double done = static_cast<double>(t % steps_per_epoch_ + 1) /
                          static_cast<double>(steps_per_epoch_);
      std::printf("\r\033[Kepoch %llu/%zu %5.1f%% | %.0f samples/s",
                  static_cast<unsigned long long>(epoch + 1), cfg_.epochs, 100 * done,
                  epoch_.timed_samples / std::max(train_seconds, 1e-9));
      std::fflush(stdout);
    }
    const bool epoch_end = (t + 1) % steps_per_epoch_ == 0;
    bool early_stop = false;
    if (epoch_end) {  // the epoch line, then the checkpoint(s), then the metrics line
      const EpochReport rep = epoch_report(epoch, t + 1, train_seconds);
      train_seconds = 0;
      const bool better = cfg_.keep_best && rep.pll > best_pll_;  // the same on every rank
      if (better) {
        best_pll_ = rep.pll;
        best_epoch_ = epoch + 1;
      }
      early_stop = cfg_.early_stop && t + 1 < total && epoch + 1 - best_epoch_ >= cfg_.early_stop;
      if ((epoch + 1) % cfg_.checkpoint_every == 0 || t + 1 == total || early_stop)
        save(t + 1, fmt("epoch ", epoch + 1));
      if (better) {
        write_state(best_file(), t + 1);
        if (env_.root())
          std::printf("best.h5: epoch %llu is the best so far (validation pseudo-log-likelihood "
                      "%.3f), written to %s\n",
                      static_cast<unsigned long long>(epoch + 1), rep.pll, best_file().c_str());
      }
      append_metrics(rep.metrics);
    }
    if (early_stop) {
      if (env_.root())
        std::printf("early stop after epoch %llu: no better validation pseudo-log-likelihood "
                    "for %zu epochs; the best epoch is %llu (%.3f), kept as %s\n",
                    static_cast<unsigned long long>(epoch + 1), cfg_.early_stop,
                    static_cast<unsigned long long>(best_epoch_), best_pll_, best_file().c_str());
      return exit_code::ok;
    }
    if (stop && t + 1 < total) {  // (a signal during the last step: training is done anyway)
      if (!epoch_end || (epoch + 1) % cfg_.checkpoint_every != 0) save(t + 1, "stop signal");
      if (env_.root())
        std::printf("stopped by a signal at step %llu; resume with --resume %s (exit code %d)\n",
                    static_cast<unsigned long long>(t + 1), checkpoint_file(t + 1).c_str(),
                    exit_code::preempted);
      return exit_code::preempted;
    }
  }
  report_communication(total > start_step_ ? total - start_step_ : 0);
  if (start_step_ >= total && env_.root())
    std::printf("nothing to do: the checkpoint is already at epoch %zu of %zu\n",
                static_cast<size_t>(start_step_ / steps_per_epoch_), cfg_.epochs);
  if (cfg_.keep_best && best_epoch_ && env_.root())
    std::printf("best epoch: %llu (validation pseudo-log-likelihood %.3f), kept as %s\n",
                static_cast<unsigned long long>(best_epoch_), best_pll_, best_file().c_str());
  return exit_code::ok;
}

}  // namespace rbm
