// rbm/cli.hpp — one option declaration per program feeds --help (with defaults),
// --config FILE, the start-up configuration table and the README table.
//
// defines: rbm::cli::Program, parse, help_text, version_text, markdown_table, config_table
//
// Every program declares a boost::program_options::options_description once and
// calls parse(). Common flags, the same in every program: --help, --version,
// --config FILE, --help-markdown (prints the README table of options).
#pragma once

#include <boost/program_options.hpp>
#include <map>
#include <set>
#include <string>
#include <vector>

namespace rbm::cli {

namespace po = boost::program_options;

struct Program {
  std::string name;     ///< "rbm_dist"
  std::string usage;    ///< "mpirun -np N rbm_dist --data FILE.h5 [options]"
  std::string summary;  ///< one sentence
};

struct Parsed {
  po::variables_map vm;
  std::set<std::string> from_command_line;  ///< option names given on the command line
  std::set<std::string> from_config;        ///< ... and in --config FILE
  std::set<std::string> from_base;          ///< ... and in the base configuration (checkpoint)
  /// Options given none of those ways whose default depends on other options (set by
  /// set_default): name -> the rule, shown in the configuration table's source column.
  std::map<std::string, std::string> rule_defaults;
  bool help = false;  ///< --help / --help-markdown / --version was printed: exit 0
};

/// Parses the command line, then --config FILE, then `base_config` ('name = value'
/// lines, e.g. the configuration stored in a checkpoint); earlier sources win.
/// Bad flags, bad values and unreadable config files throw UsageError with one line.
/// Does not print anything itself except for --help / --help-markdown when `speak`.
Parsed parse(const Program& prog, const po::options_description& opts, int argc, char** argv,
             const po::positional_options_description* positional = nullptr, bool speak = true,
             const std::string& base_config = "", const std::string& base_name = "");

/// The options' current values as 'name = value' lines (a valid --config file),
/// leaving out the names in `skip`.
std::string config_text(const po::options_description& opts, const po::variables_map& vm,
                        const std::set<std::string>& skip);

std::string help_text(const Program& prog, const po::options_description& opts);

/// What --version prints: "<program> <version>" on the first line (the first word of
/// `program`, so "rbm_eval loglik" gives "rbm_eval"), then one line each for the GEMM
/// backend and kernel, the MPI library, the HDF5 library, the target architecture
/// the build was compiled for, and the compiler. Safe before MPI_Init.
std::string version_text(const std::string& program);
std::string markdown_table(const po::options_description& opts);
/// The effective configuration: one row per option, its value and where it came from.
std::string config_table(const po::options_description& opts, const Parsed& parsed);

/// `config` ('name = value' lines) without the lines of the options in `names`.
std::string without_options(const std::string& config, const std::vector<std::string>& names);

/// Replaces an option's value after parsing (e.g. a path made absolute); it is then
/// shown as coming from the checkpoint unless the user gave it.
void set_value(Parsed& parsed, const std::string& name, const std::string& value);
/// True when `name` was given on the command line, in --config or in the base config.
bool given(const Parsed& parsed, const std::string& name);
/// Replaces the value of an option that was NOT given (its default depends on other
/// options); `why` names the rule, e.g. "default for --pcd".
void set_default(Parsed& parsed, const std::string& name, const std::string& value,
                 const std::string& why);

/// Value of an option as text ("" when unset), whatever its type.
std::string value_text(const po::variable_value& v);

}  // namespace rbm::cli
