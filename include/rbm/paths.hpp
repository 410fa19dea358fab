// rbm/paths.hpp — file identity and the start-up checks of output paths, shared by
// every program.
//
// defines: rbm::NamedPath, same_file, check_outputs_differ, check_output_folder,
//          remove_stale_temporaries
#pragma once

#include <string>
#include <vector>

namespace rbm {

/// A path and the flag (or role) that named it, for messages: {"--data", "d.h5"}.
struct NamedPath {
  std::string flag, path;
};

/// True when a and b name the same file: the same device and inode when both exist
/// (so hard links, "./d.h5" and "/abs/d.h5" match), else the same resolved path.
bool same_file(const std::string& a, const std::string& b);

/// Throws UsageError when an output is the same file as an input or as another output:
///   "--checkpoint d.h5 is the same file as --data d.h5: it would be overwritten; choose
///    another file name"
/// Empty paths are ignored.
void check_outputs_differ(const std::vector<NamedPath>& outputs,
                          const std::vector<NamedPath>& inputs);

/// An output file's folder exists and is writable, and the path is not a folder or a
/// non-regular file. Throws UsageError naming the flag.
void check_output_folder(const NamedPath& out);

/// Removes "<target>.tmp.<pid>" files left by killed writers on this host whose pid
/// is no longer alive (never a live process's, never another host's: the hostname is
/// part of the temporary's name, see atomic_file.hpp). Returns the names removed.
std::vector<std::string> remove_stale_temporaries(const std::string& target);

}  // namespace rbm
