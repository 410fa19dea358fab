// rbm/errors.hpp — one-line errors and the exit codes every program shares.
//
// defines: rbm::Error, rbm::UsageError, rbm::exit_code, rbm::fmt
//
// Every failure a user can cause (bad flag, bad file, bad data) is an rbm::Error
// whose what() is ONE line naming the flag or file, the bad value and the fix.
// Programs print it as "<program>: <what>" and exit with its code.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace rbm {

/// Exit codes (documented in the README, stable for batch scripts).
namespace exit_code {
inline constexpr int ok = 0;
inline constexpr int runtime = 1;     ///< I/O failure, corrupt data, internal error
inline constexpr int usage = 2;       ///< bad flag, bad dataset shape, bad input file
inline constexpr int diverged = 4;    ///< weights became NaN/Inf; last good checkpoint kept
inline constexpr int preempted = 75;  ///< stopped by SIGTERM/SIGUSR1 after writing a checkpoint
                                      ///< (EX_TEMPFAIL: "try again later" = requeue and resume)
}  // namespace exit_code

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& msg, int code = exit_code::runtime)
      : std::runtime_error(msg), code_(code) {}
  int code() const { return code_; }

 private:
  int code_;
};

/// A bad flag, option value or input file: exit code 2.
class UsageError : public Error {
 public:
  explicit UsageError(const std::string& msg) : Error(msg, exit_code::usage) {}
};

/// fmt("a", 1, "b") == "a1b": builds one-line messages without iostream noise.
template <typename... Args>
std::string fmt(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}

}  // namespace rbm
