// paths.cpp — file identity and output checks (see rbm/paths.hpp).
#include "rbm/paths.hpp"

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>

#include "rbm/atomic_file.hpp"
#include "rbm/errors.hpp"

namespace rbm {

namespace fs = std::filesystem;

bool same_file(const std::string& a, const std::string& b) {
  if (a.empty() || b.empty()) return false;
  struct stat sa {}, sb {};
  const bool ea = ::stat(a.c_str(), &sa) == 0, eb = ::stat(b.c_str(), &sb) == 0;
  if (ea && eb) return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
  if (ea != eb) return false;
  std::error_code e1, e2;
  const fs::path ca = fs::weakly_canonical(a, e1), cb = fs::weakly_canonical(b, e2);
  return !e1 && !e2 && ca == cb;
}

void check_outputs_differ(const std::vector<NamedPath>& outputs,
                          const std::vector<NamedPath>& inputs) {
  for (size_t i = 0; i < outputs.size(); ++i) {
    const NamedPath& o = outputs[i];
    if (o.path.empty()) continue;
    auto clash = [&](const NamedPath& other) {
      if (!other.path.empty() && same_file(o.path, other.path))
        throw UsageError(fmt(o.flag, " ", o.path, " is the same file as ", other.flag, " ",
                             other.path, ": it would be overwritten; choose another file name"));
    };
    for (const NamedPath& in : inputs) clash(in);
    for (size_t j = i + 1; j < outputs.size(); ++j) clash(outputs[j]);
  }
}

void check_output_folder(const NamedPath& out) {
  std::error_code ec;
  const fs::path p(out.path);
  const std::string dir = p.has_parent_path() ? p.parent_path().string() : std::string(".");
  if (!fs::is_directory(dir, ec))
    throw UsageError(fmt(out.flag, " ", out.path, ": folder ", dir, " does not exist"));
  if (::access(dir.c_str(), W_OK) != 0)
    throw UsageError(fmt(out.flag, " ", out.path, ": folder ", dir, " is not writable"));
  const fs::file_status st = fs::status(p, ec);
  if (fs::exists(st) && !fs::is_regular_file(st))
    throw UsageError(fmt(out.flag, " ", out.path, ": is ",
                         fs::is_directory(st) ? "a folder" : "not a regular file",
                         ", expected a file name"));
}

std::vector<std::string> remove_stale_temporaries(const std::string& target) {
  std::vector<std::string> removed;
  const fs::path t(target);
  const fs::path dir = t.parent_path().empty() ? fs::path(".") : t.parent_path();
  const std::string prefix = t.filename().string() + ".tmp." + AtomicFile::host_tag() + ".";
  std::error_code ec;
  for (const fs::directory_entry& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (name.rfind(prefix, 0) != 0) continue;
    const std::string pid_text = name.substr(prefix.size());
    if (pid_text.empty() || pid_text.find_first_not_of("0123456789") != std::string::npos)
      continue;
    const long pid = std::stol(pid_text);
    if (pid <= 0 || pid == ::getpid()) continue;
    if (::kill(static_cast<pid_t>(pid), 0) == 0 || errno != ESRCH) continue;  // alive
    std::error_code rm;
    if (fs::remove(e.path(), rm)) removed.push_back(e.path().string());
  }
  return removed;
}

}  // namespace rbm
