// rbm/input_file.hpp — what every program checks before it opens an input file.
//
// defines: rbm::require_regular_file, rbm::describe_non_regular
//
// A FIFO (named pipe), a terminal or a socket given as an input would make open()
// or read() wait for a writer for ever — under mpirun on every rank at once. Every
// reader (HDF5 files, their external links and external raw data, IDX files) refuses
// them up front with one line.
#pragma once

#include <string>

namespace rbm {

/// Throws UsageError "<path>: is a FIFO (named pipe), not a regular file (<what>; ...)"
/// unless `path` is a regular file (after symbolic links); a missing or unreadable
/// path is "<path>: cannot open (<strerror>)".
void require_regular_file(const std::string& path, const std::string& what);

/// "a FIFO (named pipe)", "a folder", "a character device", ... for a st_mode that is
/// not a regular file.
const char* describe_non_regular(unsigned mode);

}  // namespace rbm
