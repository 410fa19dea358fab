// rbm/atomic_file.hpp — the ONE place that writes a file next to its target and renames
// it into place.
//
// defines: rbm::AtomicFile, rbm::fsync_or_throw
//
// Protocol (every step checked; any failure removes the temporary, leaves the target
// as it was, and throws rbm::Error naming the target and the OS error):
//   1. the caller writes "<target>.tmp.<pid>" (temp_path()) and closes it, checking
//      its own write / H5Fclose / png errors;
//   2. commit(): fsync(temporary)  — the data is on disk before it gets the name
//   3.           rename(temporary, target)  — atomic within one file system
//   4.           fsync(target's folder)     — the new name itself is on disk
// A crash at any moment leaves either the old complete target or the new complete
// one. The destructor removes the temporary unless commit() succeeded.
//
// With cleanup_on_signal, SIGINT / SIGTERM / SIGHUP also remove the temporary (then
// the signal's default action runs): for single-process tools. rbm_dist installs its
// own stop handlers (checkpoint, then exit 75) and does not use this.
#pragma once

#include <string>

namespace rbm {

class AtomicFile {
 public:
  explicit AtomicFile(std::string target, bool cleanup_on_signal = false);
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  const std::string& target() const { return target_; }
  const std::string& temp_path() const { return temp_; }  ///< "<target>.tmp.<pid>"

  /// Steps 2-4. Throws rbm::Error ("<target>: cannot <step> ...: <strerror>") after
  /// removing the temporary.
  void commit();

 private:
  std::string target_, temp_;
  bool committed_ = false, signal_cleanup_ = false;
};

/// fsync of a file or a folder; throws rbm::Error "<what> <path>: <strerror>".
void fsync_or_throw(const std::string& path, bool directory, const std::string& what);

}  // namespace rbm
