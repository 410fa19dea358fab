// rbm/eval_cli.hpp — what rbm_eval's subcommands share: their context, option
// declarations, input checks, the one-line summary and the JSON line. One source
// file per subcommand family implements its options and its run function:
//   eval_loglik.cpp    loglik     AIS log Z and the mean log-likelihood of a split
//   eval_pseudo.cpp    pseudo     pseudo-likelihood, reconstruction, free-energy gap
//   eval_pictures.cpp  filters, samples   PNG grids
//   eval_features.cpp  transform, probe   p(h|x) features and a linear probe on them
// apps/rbm_eval.cpp is the dispatcher. The math is in rbm/eval.hpp.
//
// defines: rbm::evalcli::Context, Json, the option adders, the checks, and the
//          *_options() / run_*() pair of every subcommand
//
// MPI: only `loglik` uses several ranks. The others run on rank 0; their checks are
// made inside rbm::agree (so an error is one line from rank 0 and every rank exits
// with its code), their work outside it, on rank 0 only.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "rbm/cli.hpp"
#include "rbm/dataset.hpp"
#include "rbm/eval.hpp"
#include "rbm/mpi_env.hpp"
#include "rbm/rbm.hpp"

namespace rbm::evalcli {

namespace po = boost::program_options;
using Clock = std::chrono::steady_clock;
double since(Clock::time_point t0);

/// One flat JSON object on one line (non-finite numbers become null).
class Json {
 public:
  Json& add(const std::string& key, double v);
  Json& add(const std::string& key, long long v);
  Json& add(const std::string& key, size_t v);
  Json& add(const std::string& key, int v);
  Json& add(const std::string& key, const std::string& v);
  Json& add(const std::string& key, const char* v);
  Json& add_bool(const std::string& key, bool v) { return raw(key, v ? "true" : "false"); }
  std::string str() const { return "{" + body_ + "}"; }
  static std::string quote(const std::string& s);

 private:
  Json& raw(const std::string& key, const std::string& value);
  std::string body_;
};

/// A parsed subcommand invocation.
struct Context {
  const MpiEnv& env;
  const cli::Parsed& parsed;
  const po::variables_map& vm;
  Clock::time_point t0;
  const char* sub;
  std::string str(const char* name) const;
  long num(const char* name) const { return vm[name].as<long>(); }
  bool flag(const char* name) const { return vm.count(name) && vm[name].as<bool>(); }
  unsigned long seed() const { return vm["seed"].as<unsigned long>(); }
};

// ---- options shared by several subcommands (declared once each) -----------------
void add_model(po::options_description_easy_init& o);
void add_data(po::options_description_easy_init& o, const char* what);
void add_seed(po::options_description_easy_init& o);
void add_binarize(po::options_description_easy_init& o, const char* def);
void add_json(po::options_description_easy_init& o);

// ---- checks and inputs (throw UsageError with one line) -------------------------
std::string need(const Context& c, const char* name, const char* what);
long at_least(const Context& c, const char* name, long min);
std::string images_path(const std::string& split);  ///< "/<split>/images"
std::string labels_path(const std::string& split);  ///< "/<split>/labels"
void check_split_name(const std::string& split, bool allow_all);
/// read_model (rbm/checkpoint.hpp), and every parameter finite: a NaN/Inf model is a
/// UsageError naming the file, the first bad parameter and how many there are.
ParamBuffer model_for_eval(const std::string& path);
/// The dataset at /<split>/images, checked against the model's visible units.
DatasetInfo data_for_model(const std::string& data, const std::string& split,
                           const std::string& model, size_t V);
/// An output file's folder must exist; an existing file is replaced only with --force
/// when `force` is not null.
void check_output(const std::string& out, const bool* force);
/// Tile shape of a V-pixel image: rows, cols attributes of --data's /train/images
/// when given, else a square.
std::pair<size_t, size_t> tile_shape(const std::string& data, size_t V);
/// Global ids of local rows first .. first+count-1 of a shard.
std::vector<uint64_t> global_ids(const Shard& s, size_t first, size_t count);

/// --binarize: "model" (the default) takes the binarisation the model was trained with,
/// from the checkpoint's stored configuration (`fallback` for a model without one);
/// an explicit value that differs from the training one is used with a warning (rank 0).
/// With `binary_only` (loglik, pseudo) grey values are refused: -F(v) - log Z is a
/// log-probability only for v in {0,1}^V.
eval::Binarize resolve_binarize(const Context& c, const std::string& model_path,
                                eval::Binarize fallback, bool binary_only);

inline constexpr size_t kBatch = 4096;  ///< images per product when streaming a split

/// Rank 0: the one-line summary, then (with --json) the JSON object as the last line.
void print_result(const Context& c, const std::string& summary, const Json& json);

// ---- the subcommands --------------------------------------------------------------
po::options_description loglik_options();
int run_loglik(const Context& c);
po::options_description pseudo_options();
int run_pseudo(const Context& c);
po::options_description filters_options();
int run_filters(const Context& c);
po::options_description samples_options();
int run_samples(const Context& c);
po::options_description transform_options();
int run_transform(const Context& c);
po::options_description probe_options();
int run_probe(const Context& c);

}  // namespace rbm::evalcli
