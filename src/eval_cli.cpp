// eval_cli.cpp — what rbm_eval's subcommands share (see rbm/eval_cli.hpp).
#include "rbm/eval_cli.hpp"

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <sstream>

#include "rbm/checkpoint.hpp"
#include "rbm/errors.hpp"

namespace rbm::evalcli {

namespace fs = std::filesystem;

double since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// ---- JSON -----------------------------------------------------------------------

Json& Json::add(const std::string& key, double v) {
  char buf[64];
  if (std::isfinite(v))
    std::snprintf(buf, sizeof buf, "%.17g", v);
  else
    std::snprintf(buf, sizeof buf, "null");
  return raw(key, buf);
}
Json& Json::add(const std::string& key, long long v) { return raw(key, std::to_string(v)); }
Json& Json::add(const std::string& key, size_t v) { return raw(key, std::to_string(v)); }
Json& Json::add(const std::string& key, int v) { return raw(key, std::to_string(v)); }
Json& Json::add(const std::string& key, const std::string& v) { return raw(key, quote(v)); }
Json& Json::add(const std::string& key, const char* v) { return raw(key, quote(v)); }

Json& Json::raw(const std::string& key, const std::string& value) {
  body_ += (body_.empty() ? "" : ", ") + quote(key) + ": " + value;
  return *this;
}

std::string Json::quote(const std::string& s) {
  std::string o = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      o += '\\';
      o += static_cast<char>(c);
    } else if (c < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      o += buf;
    } else {
      o += static_cast<char>(c);
    }
  }
  return o + "\"";
}

std::string Context::str(const char* name) const {
  return vm.count(name) ? vm[name].as<std::string>() : std::string();
}

// ---- option declarations shared by several subcommands (declared once each) ------

void add_model(po::options_description_easy_init& o) {
  o("model", po::value<std::string>()->value_name("MODEL.h5"),
    "model or checkpoint file (/model in the rbm-checkpoint schema); also the first "
    "positional argument");
}
void add_data(po::options_description_easy_init& o, const char* what) {
  o("data", po::value<std::string>()->value_name("DATA.h5"), what);
}
void add_seed(po::options_description_easy_init& o) {
  o("seed", po::value<unsigned long>()->default_value(1)->value_name("S"),
    "seed of every random draw (counter-based: results do not depend on the rank count)");
}
void add_binarize(po::options_description_easy_init& o, const char* def) {
  o("binarize", po::value<std::string>()->default_value("model")->value_name("MODE"),
    (std::string("how pixels x become visible values: model (as the model was trained, from "
                 "the checkpoint; ") + def + " for a model without a stored setting) | threshold "
                 "(x >= 128) | stochastic (Bernoulli(x/255), seeded) | none (x/255)").c_str());
}

eval::Binarize resolve_binarize(const Context& c, const std::string& model_path,
                                eval::Binarize fallback, bool binary_only) {
  std::string trained;  // the model's training setting, if its checkpoint stores one
  if (has_train_state(model_path)) {
    std::istringstream in(read_train_state_config(model_path));
    for (std::string line; std::getline(in, line);)
      if (line.rfind("binarize = ", 0) == 0) trained = line.substr(11);
  }
  const std::string asked = c.str("binarize");
  eval::Binarize mode = fallback;
  if (asked == "model") {
    if (!trained.empty()) mode = eval::parse_binarize(trained);
  } else {
    mode = eval::parse_binarize(asked);
    if (!trained.empty() && trained != asked && c.env.root())
      std::printf("warning: %s was trained with --binarize %s; evaluating with %s gives other "
                  "numbers (up to ~15 nats of log-likelihood)\n",
                  model_path.c_str(), trained.c_str(), asked.c_str());
  }
  if (binary_only && mode == eval::Binarize::none)
    throw UsageError(fmt("--binarize none", asked == "model" ? " (how " + model_path + " was trained)" : "",
                         ": ", c.sub, " needs binary images (-F(v) - log Z is a log-probability "
                         "only for v in {0,1}^V): give --binarize stochastic or threshold"));
  return mode;
}
void add_json(po::options_description_easy_init& o) {
  o("json", po::bool_switch(), "also print the results as one JSON object (the last line)");
}

// ---- checks and inputs ----------------------------------------------------------

std::string need(const Context& c, const char* name, const char* what) {
  std::string v = c.str(name);
  if (v.empty())
    throw UsageError(fmt("no ", what, " given (see rbm_eval ", c.sub, " --help)"));
  return v;
}

long at_least(const Context& c, const char* name, long min) {
  const long v = c.num(name);
  if (v < min) throw UsageError(fmt("--", name, " ", v, ": must be at least ", min));
  return v;
}

std::string images_path(const std::string& split) { return "/" + split + "/images"; }
std::string labels_path(const std::string& split) { return "/" + split + "/labels"; }

void check_split_name(const std::string& split, bool allow_all) {
  if (split == "train" || split == "test" || split == "validation" || (allow_all && split == "all"))
    return;
  throw UsageError(fmt("--split ", split, ": expected train, test, validation",
                       allow_all ? " or all" : ""));
}

// read_model, then every parameter must be finite: a NaN or Inf weight makes every
// number rbm_eval prints NaN (log Z = -nan, NaN features, a probe at chance), so the
// model is refused with the first bad value's place.
ParamBuffer model_for_eval(const std::string& path) {
  ParamBuffer m = read_model(path);
  const size_t V = m.V(), H = m.H(), n = Params::count(V, H);
  const float* x = m.view.data();
  for (size_t k = 0; k < n; ++k) {
    if (std::isfinite(x[k])) continue;
    size_t bad = 0;
    for (size_t i = k; i < n; ++i) bad += std::isfinite(x[i]) ? 0 : 1;
    std::string where;
    if (k < V * H)
      where = fmt("/model/weights[", k / H, ", ", k % H, "]");
    else if (k < V * H + V)
      where = fmt("/model/visible_bias[", k - V * H, "]");
    else
      where = fmt("/model/hidden_bias[", k - V * H - V, "]");
    throw UsageError(fmt(path, ": ", where, " is ", x[k], " (", bad, " of ", n,
                         " parameters are NaN or Inf: the model diverged; evaluate a checkpoint "
                         "written before that, or retrain with a smaller --lr)"));
  }
  return m;
}

// The dataset at /<split>/images, checked against the model's visible units.
DatasetInfo data_for_model(const std::string& data, const std::string& split,
                                const std::string& model, size_t V) {
  DatasetInfo info = inspect_dataset(data, images_path(split));
  if (info.dim != V)
    throw UsageError(fmt(data, ": ", info.path, " has ", info.dim, " pixels per image but ",
                         model, " has V = ", V, " visible units (model and data must match)"));
  return info;
}

// An output file's folder must exist; an existing file is replaced only with --force
// when `force` is not null.
void check_output(const std::string& out, const bool* force) {
  std::error_code ec;
  const fs::path dir = fs::path(out).parent_path();
  if (!dir.empty() && !fs::is_directory(dir, ec))
    throw UsageError(fmt(out, ": folder ", dir.string(), " does not exist"));
  if (fs::is_directory(out, ec)) throw UsageError(out + ": is a folder, expected a file name");
  if (force && !*force && fs::exists(out, ec))
    throw UsageError(out + ": already exists (add --force to replace it)");
}

// Tile shape of a V-pixel image: /train/images attributes rows, cols of --data when
// given, else a square.
std::pair<size_t, size_t> tile_shape(const std::string& data, size_t V) {
  if (!data.empty()) {
    DatasetInfo info = inspect_dataset(data, schema::train_images);
    if (info.img_rows > 0 && info.img_cols > 0) {
      const size_t r = static_cast<size_t>(info.img_rows), c = static_cast<size_t>(info.img_cols);
      if (r * c != V)
        throw UsageError(fmt(data, ": images are ", r, "x", c, " = ", r * c,
                             " pixels but the model has V = ", V, " visible units"));
      return {r, c};
    }
  }
  const size_t s = static_cast<size_t>(std::llround(std::sqrt(static_cast<double>(V))));
  if (s * s != V)
    throw UsageError(fmt("V = ", V, " visible units is not a square image: give --data DATA.h5 "
                         "whose /train/images has attributes rows and cols"));
  return {s, s};
}

void print_result(const Context& c, const std::string& summary, const Json& json) {
  if (!c.env.root()) return;
  std::printf("%s\n", summary.c_str());
  if (c.flag("json")) std::printf("%s\n", json.str().c_str());
  std::fflush(stdout);
}

std::vector<uint64_t> global_ids(const Shard& s, size_t first, size_t count) {
  std::vector<uint64_t> ids(count);
  for (size_t n = 0; n < count; ++n) ids[n] = s.layout.global_row(first + n);
  return ids;
}


}  // namespace rbm::evalcli
