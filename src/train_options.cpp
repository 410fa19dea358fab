// train_options.cpp — rbm_dist's options, declared once, and their checks.
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
      ("pt", po::value(&c.pt)->default_value(0)->value_name("K"),
       "parallel tempering: K replicas per persistent chain (2..64) at inverse temperatures "
       "1 > ... > --pt-min-beta (geometric), swapped by Metropolis; the beta = 1 replicas give "
       "the negative phase (implies --pcd); 0 = off")
      ("pt-min-beta", po::value(&c.pt_min_beta)->default_value(0.7, "0.7")->value_name("BETA"),
       "--pt: inverse temperature of the hottest replica, in (0, 1)")
      ("lr", po::value(&c.lr)->default_value(0.1, "0.1")->value_name("RATE"), "learning rate")
      ("lr-decay", po::value(&c.lr_decay)->default_value(0.0)->value_name("D"),
       "learning rate in epoch e (from 0) is lr / (1 + D*e), times the --lr-schedule factor")
      ("lr-schedule", po::value(&c.lr_schedule)->default_value("auto")->value_name("S"),
       "constant | linear (factor 1 - e/E in epoch e of E = --epochs: decays to lr/E, "
       "Tieleman 2008); auto = constant for CD-k, linear with --pcd or --pt")
      ("momentum", po::value(&c.momentum)->default_value(0.9, "auto")->value_name("MU"),
       "momentum after --momentum-epochs; auto = 0.9 for CD-k, 0.5 with --pcd or --pt "
       "(persistent chains diverge at 0.9)")
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
      ("drop-last", po::value(&c.drop_last)->default_value("on")->value_name("on|off"),
       "on: floor(N/B) steps per epoch, each of exactly B images; the last N mod B positions "
       "of the epoch's order are left out (with --shuffle epoch, other rows every epoch). "
       "off: ceil(N/B) steps, the last one a partial batch of the remaining images")
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

void apply_method_defaults(TrainConfig& c, cli::Parsed& parsed) {
  const bool persistent = c.pcd || c.pt != 0;
  const std::string why = !persistent ? "default for CD-k"
                          : c.pt     ? "default with --pt"
                                     : "default with --pcd";
  if (!cli::given(parsed, "momentum")) {
    c.momentum = persistent ? 0.5 : 0.9;
    cli::set_default(parsed, "momentum", fmt(c.momentum), why);
  }
  if (c.lr_schedule == "auto") {
    c.lr_schedule = persistent ? "linear" : "constant";
    parsed.vm.at("lr-schedule").value() = boost::any(c.lr_schedule);
    parsed.rule_defaults["lr-schedule"] = why;
  }
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
  if (c.lr_schedule != "constant" && c.lr_schedule != "linear")
    throw UsageError("--lr-schedule " + c.lr_schedule + ": use constant, linear or auto");
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
  if (c.drop_last != "on" && c.drop_last != "off")
    throw UsageError("--drop-last " + c.drop_last + ": use on or off");
  if (c.progress != "auto" && c.progress != "always" && c.progress != "never")
    throw UsageError("--progress " + c.progress + ": use auto, always or never");
  if (c.checkpoint.empty()) throw UsageError("--checkpoint: a file name is required");
  if (c.checkpoint_every < 1) throw UsageError("--checkpoint-every 0: must be at least 1");
  if (!c.pcd && !c.pt && c.chains != 0)
    throw UsageError("--chains is only used with --pcd or --pt");
  if (c.pt != 0 && (c.pt < 2 || c.pt > 64))
    throw UsageError(fmt("--pt ", c.pt, ": parallel tempering needs 2 to 64 temperatures "
                         "(e.g. --pt 10), or 0 for none"));
  if (!(c.pt_min_beta > 0 && c.pt_min_beta < 1))
    throw UsageError(fmt("--pt-min-beta ", c.pt_min_beta,
                         ": the hottest inverse temperature must lie in (0, 1), e.g. 0.3"));
  if (c.pt && static_cast<double>(c.pt) * static_cast<double>(c.chains ? c.chains : c.batch) >=
                  4294967296.0)
    throw UsageError(fmt("--pt ", c.pt, " x ", c.chains ? c.chains : c.batch,
                         " chains: at most 2^32 replicas in all (use fewer --chains)"));
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

}  // namespace rbm
