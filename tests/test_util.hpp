// tests/test_util.hpp — shared helpers for the test suite: temporary folders,
// running our programs (also under real mpirun) and writing small IDX/HDF5 inputs.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace rbm::test {

namespace fs = std::filesystem;

/// A fresh folder under /tmp, removed (recursively) when the object dies.
struct TempDir {
  fs::path path;
  TempDir();
  ~TempDir();
  std::string operator/(const std::string& name) const { return (path / name).string(); }
};

struct RunResult {
  int code = -1;        ///< exit status; 128+signal if killed; -1 if it could not start
  std::string out;      ///< stdout
  std::string err;      ///< stderr
  double seconds = 0;   ///< wall time
  bool timed_out = false;
  long max_rss_kb = 0;  ///< peak resident set of the process started (prefix the command
                        ///< with "exec " so that it is the program, not /bin/sh)
};

/// Runs `cmd` with /bin/sh -c, capturing stdout/stderr; kills it after `timeout_s`.
RunResult run(const std::string& cmd, double timeout_s = 120);

/// Path of a program built in this tree ("rbm_dist", "mnist2h5", ...).
std::string bin(const std::string& name);

/// "mpirun -np N" with the flags our tests need (oversubscription, root).
std::string mpirun(int np);

/// Writes an IDX file: magic 0x0000 08 ndims, big-endian dims, then the bytes.
void write_idx(const std::string& path, const std::vector<uint32_t>& dims,
               const std::vector<uint8_t>& data, bool gzip = false);

/// Image i, pixel p holds a byte derived from (i, p), so every shard check is exact.
uint8_t pattern_pixel(size_t i, size_t p);

/// Writes /train/images [n, d] (pattern_pixel) and /train/labels (i % 10), plus
/// /test/* with n_test rows, in the mnist2h5 schema.
void write_pattern_h5(const std::string& path, size_t n, size_t d, size_t n_test = 0);

std::string read_file(const std::string& path);

}  // namespace rbm::test
