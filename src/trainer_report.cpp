// trainer_report.cpp — what the trainer says: the monitor (free energies,
// pseudo-likelihood), the epoch line and --metrics record, progress, communication.
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
  const double samples = epoch_.samples;  // images the epoch's steps averaged over
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
  // --pt: this epoch's swap acceptance of each neighbouring pair (all ranks' counts).
  std::vector<double> swap_rate;
  double swap_min = 1, swap_mean = 0;
  for (size_t r = 0; r < swap_accepted_.size(); ++r) {
    swap_rate.push_back(swap_tried_[r] > 0 ? swap_accepted_[r] / swap_tried_[r] : 0.0);
    swap_min = std::min(swap_min, swap_rate.back());
    swap_mean += swap_rate.back() / static_cast<double>(swap_accepted_.size());
  }
  std::fill(swap_accepted_.begin(), swap_accepted_.end(), 0.0);
  std::fill(swap_tried_.begin(), swap_tried_.end(), 0.0);
  const std::string swaps =
      swap_rate.empty() ? "" : fmt(" | swap min ", fmt_fixed(swap_min, 0, 2), " mean ", fmt_fixed(swap_mean, 0, 2));
  if (env_.root()) {
    if (live_progress()) std::printf("\r\033[K");
    const std::string mon = have_monitor_
                                ? monitor_split_ + " " + fmt_fixed(fe_valid, 9, 3) + " (gap " +
                                      fmt_fixed(fe_valid - fe_train, 0, 3, true) + ") | PLL " +
                                      monitor_split_ + " " + fmt_fixed(pll, 0, 2) + " +- " +
                                      fmt_fixed(pll_se, 0, 2)
                                : std::string("- (no validation or test images)");
    std::printf("epoch %3llu/%zu | step %7llu | lr %g mu %g | recon %.5f | F train %9.3f %s%s"
                " | %8.0f samples/s | %6.1f s (reduce %4.1f s) | ETA %s\n",
                static_cast<unsigned long long>(epoch + 1), cfg_.epochs,
                static_cast<unsigned long long>(next_step), hyper.lr, hyper.momentum, recon,
                fe_train, mon.c_str(), swaps.c_str(), rate, slowest, slow[1], seconds_text(eta).c_str());
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
  std::string pt_json;  // --pt only: "pt_swap_rates": [pair (0,1), (1,2), ...]
  if (!swap_rate.empty()) {
    pt_json = ", \"pt_swap_rates\": [";
    for (size_t r = 0; r < swap_rate.size(); ++r) pt_json += (r ? ", " : "") + num(swap_rate[r]);
    pt_json += "]";
  }
  rep.metrics = fmt("{\"epoch\": ", epoch + 1, ", \"step\": ", next_step, ", \"lr\": ", num(hyper.lr),
                    ", \"momentum\": ", num(hyper.momentum), ", \"recon_error\": ", num(recon),
                    ", \"free_energy_train\": ", num(fe_train), ", \"free_energy_", key, "\": ",
                    num(fe_valid), ", \"pseudo_loglik_", key, "\": ", num(pll),
                    ", \"pseudo_loglik_", key, "_stderr\": ", num(pll_se),
                    ", \"monitor_split\": \"", have_monitor_ ? monitor_split_ : "none", "\"",
                    ", \"exploded\": ", exploded ? "true" : "false", ", \"samples\": ", num(samples),
                    ", \"samples_per_s\": ", num(rate), ", \"seconds\": ", num(elapsed),
                    ", \"epoch_seconds\": ", num(slowest), ", \"reduce_seconds\": ", num(slow[1]),
                    ", \"ranks\": ", env_.size, pt_json, "}\n");
  return rep;
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

}  // namespace rbm
