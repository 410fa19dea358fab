#include "rbm/cli.hpp"

#include <H5public.h>
#include <mpi.h>

#include <cctype>
#include <algorithm>
#include <cstdint>
#include <fstream>
#include <map>
#include <iomanip>
#include <iostream>
#include <sstream>
#include <vector>

#include "rbm/blas_backend.hpp"
#include "rbm/errors.hpp"

namespace rbm::cli {

namespace {
po::options_description common_options() {
  po::options_description c("Common options");
  c.add_options()
      ("help,h", "print this help and exit")
      ("version", "print the version, GEMM backend, MPI and HDF5 libraries and the build's "
       "target architecture, and exit")
      ("config", po::value<std::string>()->value_name("FILE"),
       "read options from FILE (one 'name = value' per line); the command line wins")
      ("help-markdown", "print the options as a Markdown table (for the README) and exit");
  return c;
}

std::string default_of(const po::option_description& o) {
  std::string p = o.format_parameter();
  size_t a = p.find("(=");
  if (a == std::string::npos) return "";
  size_t b = p.rfind(')');
  return p.substr(a + 2, b - a - 2);
}

// Boost converts "-1" to an unsigned option by wrapping it to 2^64 - 1 (--epochs -1
// trained "forever"): counts are checked here as text before that can happen.
template <typename T>
bool is_typed(const po::value_semantic* s) {
  return dynamic_cast<const po::typed_value<T>*>(s) != nullptr;
}

void reject_negative_counts(const po::parsed_options& parsed, const po::options_description& opts,
                            const std::string& where) {
  for (const po::option& o : parsed.options) {
    if (o.unregistered || o.value.empty()) continue;
    const po::option_description* d = opts.find_nothrow(o.string_key, false);
    if (!d) continue;
    const po::value_semantic* s = d->semantic().get();
    if (!is_typed<unsigned>(s) && !is_typed<unsigned long>(s) && !is_typed<unsigned long long>(s))
      continue;
    for (const std::string& v : o.value) {
      const size_t k = v.find_first_not_of(" \t");
      if (k != std::string::npos && v[k] == '-')
        throw UsageError("--" + o.string_key + " " + v + ": must be 0 or more" + where);
    }
  }
}

// A config file is 'name = value' lines ('#' starts a comment). Checked line by line
// first, so that every error names the file and the line and says how to fix it
// (Boost would call "[train]\nlr = 1" an "unrecognised option 'train.lr'").
// Returns option name -> line number, to place Boost's value errors.
std::map<std::string, int> check_config_lines(std::istream& in, const std::string& file,
                                              const po::options_description& opts) {
  std::map<std::string, int> line_of;
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    const std::string where = file + ":" + std::to_string(n) + ": ";
    std::string t = line.substr(0, line.find('#'));
    t.erase(t.find_last_not_of(" \t\r") + 1);
    t.erase(0, std::min(t.size(), t.find_first_not_of(" \t")));
    if (t.empty()) continue;
    if (t.front() == '[')
      throw UsageError(where + "'" + t + "': sections are not used; write 'name = value' lines "
                       "at the top level (e.g. 'lr = 0.05')");
    const size_t eq = t.find('=');
    if (eq == std::string::npos)
      throw UsageError(where + "'" + t + "': expected 'name = value' (e.g. 'epochs = 20')");
    std::string name = t.substr(0, eq);
    name.erase(name.find_last_not_of(" \t") + 1);
    if (name.rfind("--", 0) == 0) name = name.substr(2);
    if (!opts.find_nothrow(name, false)) {
      std::string near;
      size_t best = 3;
      for (const auto& o : opts.options()) {  // edit distance, to suggest a near name
        const std::string& c = o->long_name();
        std::vector<size_t> d(c.size() + 1);
        for (size_t j = 0; j <= c.size(); ++j) d[j] = j;
        for (size_t i = 1; i <= name.size(); ++i) {
          size_t prev = d[0];
          d[0] = i;
          for (size_t j = 1; j <= c.size(); ++j) {
            const size_t cur = d[j];
            d[j] = std::min({d[j] + 1, d[j - 1] + 1, prev + (name[i - 1] != c[j - 1])});
            prev = cur;
          }
        }
        if (d[c.size()] < best) best = d[c.size()], near = c;
      }
      throw UsageError(where + "unknown option '" + name + "'" +
                       (near.empty() ? "" : " (did you mean '" + near + "'?)") +
                       "; the names are those of --help without the dashes");
    }
    line_of[name] = n;
  }
  return line_of;
}

std::string value_name(const po::option_description& o) {
  std::string p = o.format_parameter();
  size_t a = p.find(" (=");
  return a == std::string::npos ? p : p.substr(0, a);
}
}  // namespace

template <typename T>
bool print_as(const boost::any& a, std::ostream& os) {
  const T* p = boost::any_cast<T>(&a);
  if (p) os << *p;
  return p != nullptr;
}

std::string value_text(const po::variable_value& v) {
  if (v.empty()) return "";
  const boost::any& a = v.value();
  std::ostringstream os;
  if (auto b = boost::any_cast<bool>(&a)) return *b ? "true" : "false";
  if (auto l = boost::any_cast<std::vector<std::string>>(&a)) {
    for (size_t i = 0; i < l->size(); ++i) os << (i ? " " : "") << (*l)[i];
    return os.str();
  }
  if (print_as<std::string>(a, os) || print_as<int>(a, os) || print_as<unsigned>(a, os) ||
      print_as<long>(a, os) || print_as<unsigned long>(a, os) || print_as<long long>(a, os) ||
      print_as<unsigned long long>(a, os) || print_as<double>(a, os) || print_as<float>(a, os))
    return os.str();
  return "?";
}

std::string help_text(const Program& prog, const po::options_description& opts) {
  std::ostringstream os;
  os << prog.summary << "\n\nusage: " << prog.usage << "\n\n" << opts << "\n"
     << common_options() << "\n";
  return os.str();
}

#ifndef RBM_TARGET_ARCH
#define RBM_TARGET_ARCH "unknown"
#endif

std::string version_text(const std::string& program) {
  std::ostringstream os;
  os << program.substr(0, program.find(' ')) << " " << RBM_VERSION << "\n";
  os << "GEMM: " << blas::describe() << "\n";
  // MPI_Get_library_version may be called before MPI_Init (MPI 3.0, section 8.1.1).
  char mpi[MPI_MAX_LIBRARY_VERSION_STRING] = {0};
  int len = 0;
  MPI_Get_library_version(mpi, &len);
  std::string mpi_text(mpi, static_cast<size_t>(len));  // Open MPI counts a '\0' in len
  mpi_text = mpi_text.substr(0, mpi_text.find_first_of(std::string("\n\0", 2)));  // MPICH: many lines
  while (!mpi_text.empty() && std::isspace(static_cast<unsigned char>(mpi_text.back())))
    mpi_text.pop_back();
  int mpi_major = 0, mpi_minor = 0;
  MPI_Get_version(&mpi_major, &mpi_minor);
  os << "MPI: " << mpi_text << " (MPI " << mpi_major << "." << mpi_minor << ")\n";
  unsigned h_major = 0, h_minor = 0, h_release = 0;
  H5get_libversion(&h_major, &h_minor, &h_release);
  os << "HDF5: " << h_major << "." << h_minor << "." << h_release << " (built against "
     << H5_VERS_MAJOR << "." << H5_VERS_MINOR << "." << H5_VERS_RELEASE << ")\n";
  os << "target architecture: " << RBM_TARGET_ARCH << "\n";
#if defined(__clang__)
  os << "compiler: Clang " << __clang_major__ << "." << __clang_minor__ << "."
     << __clang_patchlevel__ << "\n";
#elif defined(__GNUC__)
  os << "compiler: GCC " << __GNUC__ << "." << __GNUC_MINOR__ << "." << __GNUC_PATCHLEVEL__
     << "\n";
#endif
  return os.str();
}

std::string markdown_table(const po::options_description& opts) {
  std::ostringstream os;
  os << "| option | default | meaning |\n|---|---|---|\n";
  for (const auto& o : opts.options()) {
    std::string vn = value_name(*o);
    std::string flag = "--" + o->long_name() + (vn.empty() ? "" : " " + vn);
    std::string def = default_of(*o);
    std::string desc = o->description();
    for (size_t k = desc.find('|'); k != std::string::npos; k = desc.find('|', k + 2))
      desc.replace(k, 1, "\\|");  // a literal | inside a Markdown table cell
    os << "| `" << flag << "` | " << (def.empty() ? "" : "`" + def + "`") << " | " << desc
       << " |\n";
  }
  return os.str();
}

std::string config_table(const po::options_description& opts, const Parsed& parsed) {
  std::ostringstream os;
  size_t w = 8;
  for (const auto& o : opts.options()) w = std::max(w, o->long_name().size());
  for (const auto& o : opts.options()) {
    const std::string& n = o->long_name();
    if (!parsed.vm.count(n)) continue;
    std::string src = parsed.from_command_line.count(n) ? "command line"
                      : parsed.from_config.count(n)     ? "config file"
                      : parsed.from_base.count(n)       ? "checkpoint"
                      : parsed.rule_defaults.count(n)   ? parsed.rule_defaults.at(n)
                                                        : "default";
    os << "| " << std::left << std::setw(static_cast<int>(w)) << n << " | " << std::setw(24)
       << value_text(parsed.vm[n]) << " | " << src << "\n";
  }
  return os.str();
}

std::string config_text(const po::options_description& opts, const po::variables_map& vm,
                        const std::set<std::string>& skip) {
  std::ostringstream os;
  for (const auto& o : opts.options()) {
    const std::string& n = o->long_name();
    if (skip.count(n) || !vm.count(n)) continue;
    os << n << " = " << value_text(vm[n]) << "\n";
  }
  return os.str();
}

std::string without_options(const std::string& config, const std::vector<std::string>& names) {
  std::istringstream in(config);
  std::string out, line;
  while (std::getline(in, line)) {
    const size_t eq = line.find('=');
    std::string key = line.substr(0, eq);
    key.erase(key.find_last_not_of(" \t") + 1);
    key.erase(0, key.find_first_not_of(" \t"));
    if (eq != std::string::npos && std::find(names.begin(), names.end(), key) != names.end())
      continue;
    out += line + "\n";
  }
  return out;
}

void set_value(Parsed& parsed, const std::string& name, const std::string& value) {
  if (!parsed.vm.count(name)) return;
  parsed.vm.at(name).value() = boost::any(value);
  if (!parsed.from_command_line.count(name) && !parsed.from_config.count(name))
    parsed.from_base.insert(name);
}

bool given(const Parsed& parsed, const std::string& name) {
  return parsed.from_command_line.count(name) || parsed.from_config.count(name) ||
         parsed.from_base.count(name);
}

void set_default(Parsed& parsed, const std::string& name, const std::string& value,
                 const std::string& why) {
  if (!parsed.vm.count(name) || given(parsed, name)) return;
  parsed.vm.at(name).value() = boost::any(value);
  parsed.rule_defaults[name] = why;
}

Parsed parse(const Program& prog, const po::options_description& opts, int argc, char** argv,
             const po::positional_options_description* positional, bool speak,
             const std::string& base_config, const std::string& base_name) {
  po::options_description all;
  all.add(opts).add(common_options());
  Parsed out;
  try {
    po::command_line_parser parser(argc, argv);
    parser.options(all);
    if (positional) parser.positional(*positional);
    po::parsed_options cl = parser.run();
    reject_negative_counts(cl, all, "");
    for (const auto& o : cl.options)
      if (!o.unregistered) out.from_command_line.insert(o.string_key);
    po::store(cl, out.vm);
    if (out.vm.count("version")) {
      out.help = true;
      if (speak) std::cout << version_text(prog.name);
      return out;
    }
    if (out.vm.count("help") || out.vm.count("help-markdown")) {
      out.help = true;
      if (speak) std::cout << (out.vm.count("help") ? help_text(prog, opts) : markdown_table(opts));
      return out;
    }
    if (out.vm.count("config")) {
      const std::string path = out.vm["config"].as<std::string>();
      std::ifstream check(path);
      if (!check) throw UsageError("--config " + path + ": cannot open (no such file?)");
      const std::map<std::string, int> line_of = check_config_lines(check, path, opts);
      std::ifstream in(path);
      try {
        po::parsed_options cf = po::parse_config_file(in, opts, false);
        reject_negative_counts(cf, opts, " (in --config " + path + ")");
        for (const auto& o : cf.options) out.from_config.insert(o.string_key);
        po::store(cf, out.vm);  // values already stored (command line) are kept
      } catch (const po::error_with_option_name& e) {
        std::string name = e.get_option_name();
        name.erase(0, name.find_first_not_of('-'));
        auto it = line_of.find(name);
        throw UsageError(path + ":" + (it == line_of.end() ? std::string("?") : std::to_string(it->second)) +
                         ": " + e.what() + " (see " + prog.name + " --help)");
      }
    }
    if (!base_config.empty()) {
      std::istringstream in(base_config);
      po::parsed_options bf = po::parse_config_file(in, opts, true);
      reject_negative_counts(bf, opts, " (stored in " + base_name + ")");
      for (const auto& o : bf.options)
        if (!out.vm.count(o.string_key) || out.vm[o.string_key].defaulted())
          out.from_base.insert(o.string_key);
      po::store(bf, out.vm);
    }
    po::notify(out.vm);
  } catch (const po::error& e) {
    if (!base_name.empty() && !base_config.empty() && out.vm.count("help") == 0)
      throw UsageError(std::string(e.what()) + " (in " + base_name + " or the command line; see " +
                       prog.name + " --help)");
    throw UsageError(std::string(e.what()) + " (see " + prog.name + " --help)");
  }
  return out;
}

}  // namespace rbm::cli
