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

namespace rbm {

namespace po = cli::po;

// ---------------------------------------------------------------------------
// Options: declared once.
// ---------------------------------------------------------------------------
po::options_description train_options(TrainConfig& c) {
  po::options_description o("rbm_dist options");
  o.add_options()
      ("data", po::value(&c.data)->value_name("FILE"),
       "dataset in the mnist2h5 schema (required)")
      ("train-path", po::value(&c.train_path)->default_value("/train/images")->value_name("PATH"),
       "training images inside --data: uint8 or float32 [N, V]")
      ("monitor-path", po::value(&c.monitor_path)->default_value("")->value_name("PATH"),
       "images for the free-energy monitor; empty = /validation/images, else /test/images")
      ("hidden", po::value(&c.hidden)->default_value(500)->value_name("H"), "hidden units")
      ("epochs", po::value(&c.epochs)->default_value(20)->value_name("N"),
       "total epochs (a resumed run continues up to this number)")
      ("batch-size", po::value(&c.batch)->default_value(100)->value_name("B"),
       "GLOBAL mini-batch size, split over the ranks")
      ("cd-k", po::value(&c.cd_k)->default_value(1)->value_name("K"),
       "Gibbs steps per update (CD-k, or PCD sweeps per update)")
      ("pcd", po::bool_switch(&c.pcd), "persistent CD: negative phase from persistent chains")
      ("chains", po::value(&c.chains)->default_value(0)->value_name("C"),
       "PCD chains over all ranks; 0 = --batch-size")
      ("lr", po::value(&c.lr)->default_value(0.1, "0.1")->value_name("RATE"), "learning rate")
      ("lr-decay", po::value(&c.lr_decay)->default_value(0.0)->value_name("D"),
       "learning rate in epoch e is lr / (1 + D*e)")
      ("momentum", po::value(&c.momentum)->default_value(0.9, "0.9")->value_name("MU"),
       "momentum after --momentum-epochs")
      ("initial-momentum", po::value(&c.initial_momentum)->default_value(0.5)->value_name("MU"),
       "momentum for the first --momentum-epochs epochs")
      ("momentum-epochs", po::value(&c.momentum_epochs)->default_value(5)->value_name("N"),
       "epochs that use --initial-momentum")
      ("weight-decay", po::value(&c.weight_decay)->default_value(2e-4, "0.0002")->value_name("L2"),
       "L2 weight decay on the weights (not the biases)")
      ("init-std", po::value(&c.init_std)->default_value(0.01, "0.01")->value_name("S"),
       "initial weights ~ N(0, S^2)")
      ("binarize", po::value(&c.binarize)->default_value("stochastic")->value_name("MODE"),
       "stochastic (Bernoulli(pixel/255), the data a binary RBM models) | threshold "
       "(pixel >= 128) | none (grey values pixel/255)")
      ("shuffle", po::value(&c.shuffle)->default_value("epoch")->value_name("MODE"),
       "epoch (a new order every epoch: rows shuffled within each virtual shard, shards "
       "visited in a rotated low-discrepancy order) | none (the same order every epoch: file "
       "order within the shards). Either way the batches do not depend on the rank count")
      ("seed", po::value(&c.seed)->default_value(1)->value_name("S"),
       "seed of every random draw (Philox counter-based)")
      ("checkpoint", po::value(&c.checkpoint)->default_value("model.h5")->value_name("FILE"),
       "checkpoint/model file written by rank 0 (atomically); '{epoch}' in the name keeps one "
       "file per checkpoint (model-{epoch}.h5); with --resume F the default is F itself")
      ("checkpoint-every", po::value(&c.checkpoint_every)->default_value(1)->value_name("E"),
       "write the checkpoint every E epochs (and always at the end)")
      ("resume", po::value(&c.resume)->value_name("FILE"),
       "continue from this checkpoint (its options are the defaults, except output paths)")
      ("init-from", po::value(&c.init_from)->value_name("MODEL.h5"),
       "start a NEW run (step 0, new options) from this model's parameters only")
      ("force", po::bool_switch(&c.force),
       "a fresh run may replace an existing --checkpoint / --metrics file")
      ("metrics", po::value(&c.metrics)->default_value("")->value_name("FILE"),
       "append one JSON line per epoch to FILE; with --resume F, the default is F's own "
       "metrics file when F is that run's checkpoint")
      ("keep-best", po::bool_switch(&c.keep_best),
       "also keep best.h5 (next to --checkpoint): the epoch with the best validation "
       "pseudo-log-likelihood")
      ("early-stop", po::value(&c.early_stop)->default_value(0)->value_name("P"),
       "stop after P epochs without a better validation pseudo-log-likelihood (0 = never)")
      ("pll-draws", po::value(&c.pll_draws)->default_value(5)->value_name("D"),
       "flipped-pixel draws per monitor image for the epoch's pseudo-log-likelihood")
      ("check-consistency", po::value(&c.check_consistency)->default_value(100)->value_name("N"),
       "compare a checksum of the parameters across ranks every N steps (0 = never)")
      ("node-size", po::value(&c.node_size)->default_value(0)->value_name("N"),
       "ranks sharing one copy of the model: 0 = all ranks of a host; N = blocks of N "
       "(1 = every rank its own copy, reduced with MPI_Allreduce)")
      ("shards", po::value(&c.shards)->default_value(720)->value_name("S"),
       "virtual shards: the training rows are cut into S blocks of consecutive rows and "
       "each rank reads only its own (S/P of them); the batches depend on S, not on the "
       "rank count P, so the model is the same for every P <= S (ranks get equal shares "
       "when P divides S; 720 = 2^4*3^2*5 has 30 divisors). Needs S >= P")
      ("overlap", po::value(&c.overlap)->default_value("on")->value_name("on|off"),
       "across nodes, reduce the weight gradient in buckets with MPI_Iallreduce while the "
       "next bucket is computed (on) or in one MPI_Allreduce after the step (off)")
      ("monitor-size", po::value(&c.monitor_size)->default_value(1000)->value_name("M"),
       "images of train and monitor data used for the free-energy monitor")
      ("progress", po::value(&c.progress)->default_value("auto")->value_name("WHEN"),
       "live progress line: auto (when stdout is a terminal) | always | never")
      ("precision", po::value(&c.precision)->default_value("fp32")->value_name("P"),
       "fp32 | bf16: inputs of the matrix products in bf16 (fp32 accumulation; weights, "
       "momentum, update and checkpoints stay fp32); bf16 needs a CPU with AVX512_BF16 or AMX");
  return o;
}

void validate(const TrainConfig& c) {
  if (c.data.empty()) throw UsageError("--data is required (a file written by mnist2h5)");
  if (c.hidden < 1) throw UsageError("--hidden 0: need at least 1 hidden unit");
  if (c.epochs < 1) throw UsageError("--epochs 0: need at least 1 epoch");
  if (c.batch < 1) throw UsageError("--batch-size 0: need at least 1 sample per step");
  if (c.cd_k < 1 || c.cd_k > 100)
    throw UsageError(fmt("--cd-k ", c.cd_k, ": must be between 1 and 100"));
  if (!(c.lr > 0) || !std::isfinite(c.lr))
    throw UsageError(fmt("--lr ", c.lr, ": the learning rate must be positive (e.g. 0.1)"));
  if (c.lr_decay < 0) throw UsageError(fmt("--lr-decay ", c.lr_decay, ": must be >= 0"));
  for (auto [name, v] : {std::pair{"--momentum", c.momentum},
                         std::pair{"--initial-momentum", c.initial_momentum}})
    if (!(v >= 0 && v < 1)) throw UsageError(fmt(name, " ", v, ": must be in [0, 1)"));
  if (c.weight_decay < 0)
    throw UsageError(fmt("--weight-decay ", c.weight_decay, ": must be >= 0"));
  if (!(c.init_std >= 0)) throw UsageError(fmt("--init-std ", c.init_std, ": must be >= 0"));
  if (c.binarize != "none" && c.binarize != "threshold" && c.binarize != "stochastic")
    throw UsageError("--binarize " + c.binarize + ": use none, threshold or stochastic");
  if (c.shuffle != "epoch" && c.shuffle != "none")
    throw UsageError("--shuffle " + c.shuffle + ": use epoch or none");
  if (c.progress != "auto" && c.progress != "always" && c.progress != "never")
    throw UsageError("--progress " + c.progress + ": use auto, always or never");
  if (c.checkpoint.empty()) throw UsageError("--checkpoint: a file name is required");
  if (c.checkpoint_every < 1) throw UsageError("--checkpoint-every 0: must be at least 1");
  if (!c.pcd && c.chains != 0) throw UsageError("--chains is only used with --pcd");
  if (c.node_size < 0) throw UsageError(fmt("--node-size ", c.node_size, ": must be >= 0"));
  if (!c.resume.empty() && !c.init_from.empty())
    throw UsageError("--resume and --init-from: give one (--resume continues a run, --init-from "
                     "starts a new one from a model's parameters)");
  if (c.pll_draws < 1) throw UsageError("--pll-draws 0: must be at least 1");
  if (c.early_stop && !c.keep_best)
    throw UsageError("--early-stop needs --keep-best (the best epoch is kept as best.h5)");
  if (c.shards < 1 || c.shards > (size_t{1} << 31))
    throw UsageError(fmt("--shards ", c.shards, ": must be between 1 and 2^31"));
  if (c.overlap != "on" && c.overlap != "off")
    throw UsageError("--overlap " + c.overlap + ": use on or off");
  if (parse_precision(c.precision) == Precision::bf16 && !bf16::cpu_has_native_bf16())
    throw UsageError(fmt("--precision bf16: this CPU has no native bf16 unit (AVX512_BF16 or "
                         "AMX-BF16; found ", bf16::native_bf16_name(),
                         "), where bf16 would run slower than fp32: use --precision fp32"));
}

// ---------------------------------------------------------------------------
// Signals: SIGTERM / SIGUSR1 set a flag that is folded into the step's reduction.
// ---------------------------------------------------------------------------
namespace {
volatile std::sig_atomic_t g_stop_signal = 0;
extern "C" void on_stop_signal(int sig) { g_stop_signal = sig; }

double now() { return MPI_Wtime(); }

// Counters appended to the gradient buffer (summed by the same reduction).
enum Counter { kReconSq = 0, kSamples = 1, kStop = 2, kCounters = 3 };

uint64_t fnv1a(const float* data, size_t n) {
  const auto* p = reinterpret_cast<const unsigned char*>(data);
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < n * sizeof(float); ++i) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

std::string fmt_fixed(double v, int width, int precision, bool sign = false) {
  char buf[64];
  std::snprintf(buf, sizeof buf, sign ? "%+*.*f" : "%*.*f", width, precision, v);
  return buf;
}

std::string seconds_text(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  long t = std::lround(s);
  if (t >= 3600) return fmt(t / 3600, "h", (t % 3600) / 60, "m");
  if (t >= 60) return fmt(t / 60, "m", t % 60, "s");
  return fmt(t, "s");
}
}  // namespace

// ---------------------------------------------------------------------------
Trainer::Trainer(const MpiEnv& env, const TrainConfig& cfg, std::string config_text)
    : env_(env), cfg_(cfg), config_text_(std::move(config_text)), rng_(cfg.seed),
      binarizer_(parse_binarize(cfg.binarize), rng_) {}

void Trainer::setup() {
  // Checks every rank makes identically: one message from rank 0, exit code 2.
  DatasetInfo info;
  std::string mpath = cfg_.monitor_path;
  agree(env_, [&] {
    info = inspect_dataset(cfg_.data, cfg_.train_path);
    if (cfg_.batch > info.rows)
      throw UsageError(fmt("--batch-size ", cfg_.batch, " is larger than the dataset (",
                           info.rows, " images in ", cfg_.data, ":", cfg_.train_path, ")"));
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
  steps_per_epoch_ = (info.rows + cfg_.batch - 1) / cfg_.batch;
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
    shared_ = std::make_unique<NodeShared>(Params::count(V_, H_), kCounters, cfg_.node_size,
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
        layout_ += (layout_.empty() ? "" : "+") + std::to_string(n);
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
  std::vector<float> u(V_);
  for (Eigen::Index m = 0; m < chains_.cols(); ++m) {
    rng_.uniforms(Stream::chain_init, 0, 0, chain_index_[m], u.data(), V_);
    for (size_t i = 0; i < V_; ++i)
      chains_(i, m) = u[i] < 1.0f / (1.0f + std::exp(-theta_.b(i))) ? 1.0f : 0.0f;
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
  std::vector<float> u(V_);
  for (Eigen::Index m = 0; m < chains_.cols(); ++m) {
    rng_.uniforms(Stream::chain_init, 0, 0, chain_index_[m], u.data(), V_);
    for (size_t i = 0; i < V_; ++i)
      chains_(i, m) = u[i] < 1.0f / (1.0f + std::exp(-theta_.b(i))) ? 1.0f : 0.0f;
  }
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
                           " steps per epoch, this run has ", steps_per_epoch_,
                           " (same --data and --batch-size needed to resume)"));
    if (cfg_.pcd && st.chains.size() != Cg_ * V_)
      throw UsageError(fmt(path, ": holds ", st.chains.size() / V_, " PCD chains, --chains is ",
                           Cg_));
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
  if (env_.root()) {
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
  const size_t p0 = s * cfg_.batch, p1 = std::min(train_.total, p0 + cfg_.batch);
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
  const size_t Bg = std::min(cfg_.batch, train_.total - s * cfg_.batch);

  load_batch(t, X_, index_);  // X_ [V, B]: this rank's part of global batch s
  // PCD's reconstruction error costs an extra product p(v|h0): it is measured on every
  // kPcdReconEvery-th step of the epoch and weighted by the samples of the steps it
  // stands for (the rest of its group), so the epoch's mean keeps its denominator.
  constexpr uint64_t kPcdReconEvery = 10;
  const bool recon = !cfg_.pcd || s % kPcdReconEvery == 0;
  const CdConfig cd{cfg_.cd_k, cfg_.pcd, t, Bg, std::max<size_t>(Cg_, 1), recon};
  // --overlap on across nodes (fp32): the weight rows come bucket by bucket below.
  const bool overlap = cfg_.overlap == "on" && shared_->nodes() > 1 && prec_ == Precision::fp32;
  const CdCounters cnt =
      overlap ? cd_statistics(theta_, cd, X_, index_.data(), cfg_.pcd ? &chains_ : nullptr,
                              chain_index_.data(), rng_, ws_.f32, grad_)
              : cd_gradient_prec(prec_, theta_, cd, X_, index_.data(), cfg_.pcd ? &chains_ : nullptr,
                                 chain_index_.data(), rng_, ws_, grad_);  // grad_ = g
  double recon_weight = 1.0;
  if (cfg_.pcd && recon) {
    const size_t n = train_.total, g0 = s * cfg_.batch;
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
    const size_t n = theta_.size() + kCounters;
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
  if (cfg_.check_consistency && (t + 1) % cfg_.check_consistency == 0) check_consistency(t);
  step_seconds_ += now() - t_start;
  return sum[kStop] > 0;
}

/// The learning rate, momentum and weight decay in force in `epoch`.
SgdHyper Trainer::hyper_for_epoch(uint64_t epoch) const {
  SgdHyper h;
  h.lr = static_cast<float>(cfg_.lr / (1.0 + cfg_.lr_decay * static_cast<double>(epoch)));
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

/// Mean free energy of the rows [0, m) of a dataset (each rank has some of them).
double Trainer::mean_free_energy(const RowBlock& s, size_t m) {
  std::vector<uint32_t> local;
  for (size_t l = 0; l < s.rows() && s.first + l < m; ++l) local.push_back(static_cast<uint32_t>(l));
  Matrix X;
  binarize_rows(s, local, UINT64_MAX, X, nullptr);  // fixed draws: the same every epoch
  double sum[2] = {local.empty() ? 0.0 : static_cast<double>(free_energy(theta_, X).sum()),
                   static_cast<double>(local.size())};
  MPI_Allreduce(MPI_IN_PLACE, sum, 2, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
  return sum[1] > 0 ? sum[0] / sum[1] : NAN;
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
  if (cfg_.pcd) {
    // Gather the chains (binary) in global chain order on rank 0.
    std::vector<uint8_t> mine(chains_.size());
    for (Eigen::Index k = 0; k < chains_.size(); ++k) mine[k] = chains_.data()[k] > 0.5f;
    std::vector<int> counts(env_.size), displs(env_.size);
    int n = static_cast<int>(mine.size());
    MPI_Gather(&n, 1, MPI_INT, counts.data(), 1, MPI_INT, 0, MPI_COMM_WORLD);
    std::vector<uint8_t> all;
    if (env_.root()) {
      for (int r = 1; r < env_.size; ++r) displs[r] = displs[r - 1] + counts[r - 1];
      all.resize(Cg_ * V_);
    }
    std::vector<uint8_t> gathered(env_.root() ? Cg_ * V_ : 0);
    MPI_Gatherv(mine.data(), n, MPI_UINT8_T, gathered.data(), counts.data(), displs.data(),
                MPI_UINT8_T, 0, MPI_COMM_WORLD);
    if (env_.root()) {
      for (int r = 0; r < env_.size; ++r) {
        ShardLayout cl(Cg_, r, env_.size);
        for (size_t l = 0; l < cl.local_rows(); ++l)
          std::copy_n(gathered.data() + displs[r] + l * V_, V_, all.data() + cl.global_row(l) * V_);
      }
      st.chains = std::move(all);
    }
  }
  // Rank 0 writes; every rank learns the outcome, so a failed write (full disk, EIO)
  // is one line from rank 0 and exit 1 on every rank, the last good checkpoint intact.
  agree(env_, [&] {
    if (env_.root()) write_checkpoint(path, theta_, &st);
  });
}

/// Pseudo-log-likelihood of the first --monitor-size monitor images (all ranks), as
/// scikit-learn's score_samples, averaged over --pll-draws flipped pixels per image:
/// returns {mean over images, its standard error (sd over images / sqrt(n))}.
std::pair<double, double> Trainer::monitor_pll() {
  std::vector<uint32_t> local;
  for (size_t l = 0; l < monitor_.rows() && monitor_.first + l < monitor_rows_; ++l)
    local.push_back(static_cast<uint32_t>(l));
  Matrix X;
  std::vector<uint64_t> ids;
  binarize_rows(monitor_, local, UINT64_MAX, X, &ids);  // fixed draws
  Eigen::VectorXd per_image = Eigen::VectorXd::Zero(X.cols());
  for (size_t d = 0; d < cfg_.pll_draws; ++d) {
    const CounterRng draw(cfg_.seed + 0x9e3779b97f4a7c15ull * (d + 1));
    if (X.cols() > 0) per_image += eval::pseudo_loglik(theta_, X, ids.data(), draw);
  }
  per_image /= static_cast<double>(cfg_.pll_draws);
  double sums[3] = {per_image.sum(), per_image.squaredNorm(), static_cast<double>(X.cols())};
  MPI_Allreduce(MPI_IN_PLACE, sums, 3, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
  const double n = sums[2], mean = sums[0] / n;
  const double var = n > 1 ? std::max(0.0, (sums[1] - n * mean * mean) / (n - 1)) : 0.0;
  return {mean, std::sqrt(var / n)};
}

Trainer::EpochReport Trainer::epoch_report(uint64_t epoch, uint64_t next_step,
                                           double train_seconds) {
  EpochReport rep;
  double fe_train = mean_free_energy(train_, std::min(cfg_.monitor_size, train_.total));
  double fe_valid = have_monitor_ ? mean_free_energy(monitor_, monitor_rows_) : NAN;
  double pll = NAN, pll_se = NAN;
  if (have_monitor_) std::tie(pll, pll_se) = monitor_pll();
  rep.pll = pll;
  // Timings of the slowest rank: [training time, time in the step's reduction + update].
  double slow[2] = {train_seconds, reduce_seconds_};
  MPI_Allreduce(MPI_IN_PLACE, slow, 2, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
  const double slowest = slow[0];
  reduce_seconds_ = 0;
  const SgdHyper hyper = hyper_for_epoch(epoch);
  const double recon = epoch_.recon_sq / std::max(1.0, epoch_.samples) / static_cast<double>(V_);
  const double rate = epoch_.timed_samples / std::max(slowest, 1e-9);
  const double elapsed = seconds_before_ + (now() - start_time_);
  const double per_epoch = (now() - start_time_) /
                           std::max(1.0, static_cast<double>(epoch + 1) -
                                             static_cast<double>(start_step_ / steps_per_epoch_));
  const double eta = per_epoch * static_cast<double>(cfg_.epochs - epoch - 1);
  // A binary RBM's free energy per image is of the order of V + H nats; far beyond
  // that the model has blown up even when nothing is NaN yet (lr 1000: F ~ 5e5).
  const double f_limit = 20.0 * static_cast<double>(V_ + H_);
  const bool exploded = !(std::abs(fe_train) < f_limit) ||
                        (have_monitor_ && !(std::abs(fe_valid) < f_limit));
  if (env_.root()) {
    if (live_progress()) std::printf("\r\033[K");
    const std::string mon = have_monitor_
                                ? monitor_split_ + " " + fmt_fixed(fe_valid, 9, 3) + " (gap " +
                                      fmt_fixed(fe_valid - fe_train, 0, 3, true) + ") | PLL " +
                                      monitor_split_ + " " + fmt_fixed(pll, 0, 2) + " +- " +
                                      fmt_fixed(pll_se, 0, 2)
                                : std::string("- (no validation or test images)");
    std::printf("epoch %3llu/%zu | step %7llu | lr %g mu %g | recon %.5f | F train %9.3f %s"
                " | %8.0f samples/s | %6.1f s (reduce %4.1f s) | ETA %s\n",
                static_cast<unsigned long long>(epoch + 1), cfg_.epochs,
                static_cast<unsigned long long>(next_step), hyper.lr, hyper.momentum, recon,
                fe_train, mon.c_str(), rate, slowest, slow[1], seconds_text(eta).c_str());
    if (exploded && !warned_exploded_)
      std::printf("warning: the mean free energy (train %.4g%s) is far beyond what a %zux%zu "
                  "binary RBM gives (|F| < %.0f): the model has blown up; the learning rate "
                  "%g is probably too large (try --lr %g)\n",
                  fe_train, have_monitor_ ? fmt(", ", monitor_split_, " ", fe_valid).c_str() : "",
                  V_, H_, f_limit, cfg_.lr, cfg_.lr / 10);
    std::fflush(stdout);
  }
  warned_exploded_ = warned_exploded_ || exploded;
  epoch_ = Monitor{};
  auto num = [](double v) { return std::isfinite(v) ? fmt(v) : std::string("null"); };
  const std::string key = monitor_split_ == "test" ? "test" : "valid";
  rep.metrics = fmt("{\"epoch\": ", epoch + 1, ", \"step\": ", next_step, ", \"lr\": ", num(hyper.lr),
                    ", \"momentum\": ", num(hyper.momentum), ", \"recon_error\": ", num(recon),
                    ", \"free_energy_train\": ", num(fe_train), ", \"free_energy_", key, "\": ",
                    num(fe_valid), ", \"pseudo_loglik_", key, "\": ", num(pll),
                    ", \"pseudo_loglik_", key, "_stderr\": ", num(pll_se),
                    ", \"monitor_split\": \"", have_monitor_ ? monitor_split_ : "none", "\"",
                    ", \"exploded\": ", exploded ? "true" : "false",
                    ", \"samples_per_s\": ", num(rate), ", \"seconds\": ", num(elapsed),
                    ", \"epoch_seconds\": ", num(slowest), ", \"reduce_seconds\": ", num(slow[1]),
                    ", \"ranks\": ", env_.size, "}\n");
  return rep;
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

/// --progress auto: a live line only on a terminal, and never inside a batch job
/// (under Slurm, mpirun gives rank 0 a pseudo-terminal even when output goes to a file).
bool Trainer::live_progress() const {
  if (cfg_.progress == "always") return true;
  if (cfg_.progress == "never") return false;
  if (!isatty(1) || std::getenv("SLURM_JOB_ID")) return false;
  // Under mpirun, rank 0's stdout is a pseudo-terminal even when mpirun's own output
  // goes to a file: ask where the launcher's stdout goes (our parent, on one node).
  if (std::getenv("OMPI_COMM_WORLD_SIZE") || std::getenv("PMIX_RANK")) {
    char link[64], target[256];
    std::snprintf(link, sizeof link, "/proc/%d/fd/1", static_cast<int>(getppid()));
    const ssize_t n = readlink(link, target, sizeof target - 1);
    if (n <= 0) return false;
    target[n] = '\0';
    return std::strncmp(target, "/dev/pts/", 9) == 0 || std::strncmp(target, "/dev/tty", 8) == 0;
  }
  return true;
}

/// Jobs on several nodes: how long the node leaders waited for the cross-node reduction
/// per step (the communication the computation did not hide), next to the step time.
void Trainer::report_communication(uint64_t steps) {
  if (shared_->nodes() == 1 || steps == 0) return;
  double v[2] = {comm_seconds_, step_seconds_};
  MPI_Allreduce(MPI_IN_PLACE, v, 2, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
  if (env_.root()) {
    const double per = 1e3 / static_cast<double>(steps);
    std::printf("cross-node reduction: %.3f ms per step not hidden (slowest node leader; "
                "--overlap %s), step %.3f ms, %llu steps on %d nodes\n",
                v[0] * per, cfg_.overlap.c_str(), v[1] * per,
                static_cast<unsigned long long>(steps), shared_->nodes());
    std::fflush(stdout);
  }
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
