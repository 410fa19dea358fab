#include "rbm/h5.hpp"

#include "rbm/errors.hpp"
#include "rbm/input_file.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <vector>

namespace rbm::h5 {

namespace {
// Why an external link was refused (set by elink_guard, read by fail()).
thread_local std::string g_refused;

std::string dirname_of(const std::string& p) {
  const std::string d = std::filesystem::path(p).parent_path().string();
  return d.empty() ? "." : d;
}

// External-link traversal callback: HDF5 calls it with the link's file name as
// stored, BEFORE it opens that file. Opening a FIFO (or a terminal) would block the
// process for ever, so every place HDF5 may look for the target (the name itself,
// HDF5_EXT_PREFIX, the linking file's folder, and the base name in both for an
// absolute name) must be a regular file where it exists.
herr_t elink_guard(const char* parent_file, const char* /*parent_group*/, const char* child_file,
                   const char* child_object, unsigned* /*flags*/, hid_t /*fapl*/, void*) {
  const std::string child = child_file, pdir = dirname_of(parent_file);
  std::vector<std::string> candidates;
  const bool absolute = !child.empty() && child[0] == '/';
  const std::string base = std::filesystem::path(child).filename().string();
  std::vector<std::string> prefixes;
  if (const char* env = std::getenv("HDF5_EXT_PREFIX")) {
    std::string list = env;
    for (size_t a = 0; a <= list.size();) {
      size_t b = list.find(':', a);
      if (b == std::string::npos) b = list.size();
      if (b > a) prefixes.push_back(list.substr(a, b - a));
      a = b + 1;
    }
  }
  candidates.push_back(child);
  for (const std::string& pre : prefixes) candidates.push_back(pre + "/" + (absolute ? base : child));
  candidates.push_back(pdir + "/" + (absolute ? base : child));
  if (absolute) candidates.push_back(base);
  for (const std::string& c : candidates) {
    struct stat st {};
    if (::stat(c.c_str(), &st) != 0) continue;
    if (!S_ISREG(st.st_mode)) {
      g_refused = fmt("external link to ", child, ":", child_object, " leads to ", c, ", ",
                      describe_non_regular(st.st_mode),
                      " (HDF5 files must be regular files; replace the link or the file)");
      return -1;
    }
  }
  return 0;
}

// Link and dataset access property lists that route external links through elink_guard.
hid_t guarded_lapl() {
  static const hid_t id = [] {
    hid_t p = H5Pcreate(H5P_LINK_ACCESS);
    H5Pset_elink_cb(p, elink_guard, nullptr);
    return p;
  }();
  return id;
}
hid_t guarded_dapl() {
  static const hid_t id = [] {
    hid_t p = H5Pcreate(H5P_DATASET_ACCESS);
    H5Pset_elink_cb(p, elink_guard, nullptr);
    return p;
  }();
  return id;
}

std::string human_bytes(long double b) {
  const char* unit[] = {"bytes", "KB", "MB", "GB", "TB", "PB", "EB"};
  int u = 0;
  while (b >= 1000 && u < 6) {
    b /= 1000;
    ++u;
  }
  char buf[64];
  if (u == 0)
    std::snprintf(buf, sizeof buf, "%.0Lf bytes", b);
  else
    std::snprintf(buf, sizeof buf, "%.1Lf %s", b, unit[u]);
  return buf;
}
}  // namespace

void init() {
  static const bool done = [] {
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
    return true;
  }();
  (void)done;
}

Id& Id::operator=(Id&& o) noexcept {
  if (this != &o) {
    reset();
    id_ = o.id_;
    closer_ = o.closer_;
    o.id_ = H5I_INVALID_HID;
  }
  return *this;
}

void Id::reset() {
  if (id_ >= 0 && closer_) closer_(id_);
  id_ = H5I_INVALID_HID;
}

herr_t Id::close() {
  herr_t status = id_ >= 0 && closer_ ? closer_(id_) : 0;
  id_ = H5I_INVALID_HID;
  return status;
}

namespace {
// H5Ewalk callback: remember the first non-empty description. Walked UPWARD, the
// first entry (n == 0) is the innermost one, where the error was detected (e.g.
// "truncated file: eof = ..."); DOWNWARD would start at the outermost API call
// ("unable to open file"), which says nothing.
herr_t innermost(unsigned, const H5E_error2_t* e, void* out) {
  auto* s = static_cast<std::string*>(out);
  if (s->empty() && e->desc && *e->desc) *s = e->desc;
  return 0;
}
}  // namespace

std::string innermost_error() {
  std::string desc;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, innermost, &desc);
  H5Eclear2(H5E_DEFAULT);
  if (!g_refused.empty()) {
    desc = g_refused;
    g_refused.clear();
  }
  if (desc.empty()) desc = "HDF5 call failed";
  return desc;
}

void fail(const std::string& context, int code) {
  const std::string msg = context + ": " + innermost_error();
  if (code == exit_code::usage) throw UsageError(msg);
  throw Error(msg, code);
}

Id open_file(const std::string& path, bool writable) {
  init();
  require_regular_file(path, "expected an HDF5 file");
  htri_t is_h5 = H5Fis_hdf5(path.c_str());
  if (is_h5 <= 0) {
    H5Eclear2(H5E_DEFAULT);
    FILE* f = std::fopen(path.c_str(), "rb");
    if (!f) throw UsageError(path + ": cannot open (no such file or not readable)");
    std::fclose(f);
    throw UsageError(path + ": not an HDF5 file (convert MNIST IDX files with mnist2h5)");
  }
  hid_t id = H5Fopen(path.c_str(), writable ? H5F_ACC_RDWR : H5F_ACC_RDONLY, H5P_DEFAULT);
  if (id < 0) fail(path + ": cannot open HDF5 file (damaged or truncated?)", exit_code::usage);
  return Id(id, H5Fclose);
}

Id create_file(const std::string& path) {
  init();
  hid_t id = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  if (id < 0) fail(path + ": cannot create HDF5 file");
  return Id(id, H5Fclose);
}

void close_written(Id& file, const std::string& path) {
  if (H5Fflush(file, H5F_SCOPE_GLOBAL) < 0) {
    file.reset();
    fail(path + ": cannot write");
  }
  if (file.close() < 0) fail(path + ": cannot write");
}

bool exists(hid_t loc, const std::string& path) {
  // H5Lexists must be asked one component at a time ("/a" before "/a/b").
  std::string prefix;
  size_t pos = 0;
  while (pos < path.size()) {
    size_t next = path.find('/', pos + 1);
    if (next == std::string::npos) next = path.size();
    prefix = path.substr(0, next);
    if (prefix != "/" && !prefix.empty()) {
      htri_t e = H5Lexists(loc, prefix.c_str(), guarded_lapl());
      if (e < 0 && !g_refused.empty()) {
        char name[4096] = "";
        H5Fget_name(loc, name, sizeof name);
        fail(fmt(name, ": cannot follow ", prefix), exit_code::usage);
      }
      if (e <= 0) {
        H5Eclear2(H5E_DEFAULT);
        return false;
      }
    }
    pos = next;
  }
  return true;
}

void ensure_group(hid_t loc, const std::string& path) {
  size_t pos = 0;
  while (pos < path.size()) {
    size_t next = path.find('/', pos + 1);
    if (next == std::string::npos) next = path.size();
    std::string prefix = path.substr(0, next);
    if (!prefix.empty() && prefix != "/" && !exists(loc, prefix)) {
      hid_t g = H5Gcreate2(loc, prefix.c_str(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
      if (g < 0) fail("cannot create group " + prefix);
      H5Gclose(g);
    }
    pos = next;
  }
}

Id open_dataset(hid_t loc, const std::string& path, const std::string& file) {
  if (!exists(loc, path))
    throw UsageError(file + ": no dataset " + path +
                     " (expected the mnist2h5 schema: /train/images, /train/labels, ...)");
  H5O_info_t info{};
  if (H5Oget_info_by_name2(loc, path.c_str(), &info, H5O_INFO_BASIC, guarded_lapl()) < 0)
    fail(file + ": cannot open " + path + " (a broken link?)", exit_code::usage);
  if (info.type != H5O_TYPE_DATASET)
    throw UsageError(fmt(file, ": ", path, " is ",
                         info.type == H5O_TYPE_GROUP ? "a group" : "not a dataset",
                         ", expected a dataset (e.g. /train/images)"));
  hid_t id = H5Dopen2(loc, path.c_str(), guarded_dapl());
  if (id < 0) fail(file + ": cannot open dataset " + path, exit_code::usage);
  return Id(id, H5Dclose);
}

void check_stored(hid_t dset, const std::string& file, const std::string& path) {
  const std::vector<hsize_t> dims = dataset_shape(dset);
  Id type(H5Dget_type(dset), H5Tclose);
  long double declared = static_cast<long double>(H5Tget_size(type));
  std::string shape = "[";
  for (size_t i = 0; i < dims.size(); ++i) {
    declared *= static_cast<long double>(dims[i]);
    shape += (i ? ", " : "") + std::to_string(dims[i]);
  }
  shape += "]";
  if (declared == 0) return;
  Id dcpl(H5Dget_create_plist(dset), H5Pclose);
  Id fid(H5Iget_file_id(dset), H5Fclose);
  hsize_t file_size = 0;
  H5Fget_filesize(fid, &file_size);
  const std::string head = fmt(file, ": ", path, " declares ", shape, " = ", human_bytes(declared));
  const std::string fix =
      " (an incomplete or crafted file: write it again, with mnist2h5 for data or rbm_dist for "
      "a model)";

  // Raw data in external flat files (H5Pset_external): each must be a regular file
  // holding its part.
  const int n_ext = H5Pget_external_count(dcpl);
  if (n_ext > 0) {
    long double stored = 0;
    for (int i = 0; i < n_ext; ++i) {
      char name[4096] = {0};
      off_t offset = 0;
      hsize_t size = 0;
      if (H5Pget_external(dcpl, static_cast<unsigned>(i), sizeof name, name, &offset, &size) < 0)
        fail(file + ": " + path + ": cannot read its external storage list", exit_code::usage);
      std::string ext = name;
      if (!ext.empty() && ext[0] != '/') {
        struct stat st {};
        if (::stat(ext.c_str(), &st) != 0) ext = dirname_of(file) + "/" + ext;
      }
      struct stat st {};
      if (::stat(ext.c_str(), &st) != 0)
        throw UsageError(fmt(head, " stored in external file ", name, ", which does not exist",
                             fix));
      if (!S_ISREG(st.st_mode))
        throw UsageError(fmt(head, " stored in external file ", ext, ", which is ",
                             describe_non_regular(st.st_mode),
                             " (raw data must be in regular files)"));
      const long double avail =
          st.st_size > offset ? static_cast<long double>(st.st_size - offset) : 0.0L;
      stored += std::min(avail, static_cast<long double>(size));
    }
    if (stored < declared)
      throw UsageError(fmt(head, " but its external files hold only ", human_bytes(stored), fix));
    return;
  }
  switch (H5Pget_layout(dcpl)) {
    case H5D_COMPACT:  // in the object header: all there
      return;
    case H5D_CONTIGUOUS: {
      const haddr_t addr = H5Dget_offset(dset);
      H5Eclear2(H5E_DEFAULT);
      const long double stored = static_cast<long double>(H5Dget_storage_size(dset));
      if (addr == HADDR_UNDEF || stored < declared)
        throw UsageError(fmt(head, " but the file stores ", human_bytes(stored), " of it (",
                             human_bytes(file_size), " file)", fix));
      if (static_cast<long double>(addr) + declared > static_cast<long double>(file_size))
        throw UsageError(fmt(head, " at byte ", addr, " but the file ends at byte ", file_size,
                             " (", human_bytes(file_size), ")", fix));
      return;
    }
    case H5D_CHUNKED: {
      std::vector<hsize_t> chunk(dims.size());
      if (H5Pget_chunk(dcpl, static_cast<int>(chunk.size()), chunk.data()) < 0)
        fail(file + ": " + path + ": cannot read its chunk shape", exit_code::usage);
      long double expected = 1;
      for (size_t i = 0; i < dims.size(); ++i)
        expected *= static_cast<long double>((dims[i] + chunk[i] - 1) / std::max<hsize_t>(chunk[i], 1));
      hsize_t have = 0;
      Id space(H5Dget_space(dset), H5Sclose);  // (H5S_ALL is refused by 1.10.8)
      if (H5Dget_num_chunks(dset, space, &have) < 0)
        fail(file + ": " + path + ": cannot count its chunks", exit_code::usage);
      if (static_cast<long double>(have) < expected)
        throw UsageError(fmt(head, " in ", static_cast<unsigned long long>(expected),
                             " chunks but the file stores ", have, " of them (",
                             human_bytes(static_cast<long double>(H5Dget_storage_size(dset))),
                             " in a ", human_bytes(file_size), " file)", fix));
      return;
    }
    default:
      throw UsageError(fmt(file, ": ", path,
                           " is a virtual dataset (it maps other files); give a plain dataset "
                           "(mnist2h5 writes one)"));
  }
}

Id open_object(hid_t loc, const std::string& path) {
  hid_t id = H5Oopen(loc, path.c_str(), guarded_lapl());
  if (id < 0) fail("cannot open " + path);
  return Id(id, H5Oclose);
}

std::vector<hsize_t> dataset_shape(hid_t dset) {
  Id space(H5Dget_space(dset), H5Sclose);
  int rank = H5Sget_simple_extent_ndims(space);
  if (rank < 0) fail("cannot read dataset shape");
  std::vector<hsize_t> dims(rank);
  H5Sget_simple_extent_dims(space, dims.data(), nullptr);
  return dims;
}

Type dataset_type(hid_t dset) {
  Id t(H5Dget_type(dset), H5Tclose);
  H5T_class_t cls = H5Tget_class(t);
  size_t size = H5Tget_size(t);
  if (cls == H5T_INTEGER) {
    H5T_sign_t sign = H5Tget_sign(t);
    if (size == 1 && sign == H5T_SGN_NONE) return Type::u8;
    if (size == 4 && sign == H5T_SGN_2) return Type::i32;
    if (size == 8 && sign == H5T_SGN_2) return Type::i64;
  } else if (cls == H5T_FLOAT) {
    if (size == 4) return Type::f32;
    if (size == 8) return Type::f64;
  }
  return Type::other;
}

const char* type_name(Type t) {
  switch (t) {
    case Type::u8: return "uint8";
    case Type::i32: return "int32";
    case Type::i64: return "int64";
    case Type::f32: return "float32";
    case Type::f64: return "float64";
    default: return "an unsupported type";
  }
}

template <> hid_t native_type<uint8_t>() { return H5T_NATIVE_UINT8; }
template <> hid_t native_type<int32_t>() { return H5T_NATIVE_INT32; }
template <> hid_t native_type<int64_t>() { return H5T_NATIVE_INT64; }
template <> hid_t native_type<uint64_t>() { return H5T_NATIVE_UINT64; }
template <> hid_t native_type<float>() { return H5T_NATIVE_FLOAT; }
template <> hid_t native_type<double>() { return H5T_NATIVE_DOUBLE; }

template <typename T>
void write_array(hid_t loc, const std::string& path, const T* data,
                 const std::vector<hsize_t>& dims, Storage storage) {
  size_t slash = path.rfind('/');
  if (slash != std::string::npos && slash > 0) ensure_group(loc, path.substr(0, slash));
  Id space(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr), H5Sclose);
  Id dcpl(H5Pcreate(H5P_DATASET_CREATE), H5Pclose);
  bool nonempty = !dims.empty() && dims[0] > 0;
  if (storage.chunk_rows > 0 && nonempty) {
    std::vector<hsize_t> chunk = dims;
    chunk[0] = std::min<hsize_t>(storage.chunk_rows, dims[0]);
    H5Pset_chunk(dcpl, static_cast<int>(chunk.size()), chunk.data());
    if (storage.deflate > 0) {
      H5Pset_shuffle(dcpl);
      H5Pset_deflate(dcpl, static_cast<unsigned>(storage.deflate));
    }
  }
  Id dset(H5Dcreate2(loc, path.c_str(), native_type<T>(), space, H5P_DEFAULT, dcpl, H5P_DEFAULT),
          H5Dclose);
  if (dset < 0) fail("cannot create dataset " + path);
  if (H5Dwrite(dset, native_type<T>(), H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0)
    fail("cannot write dataset " + path);
}

template <typename T>
std::vector<T> read_array(hid_t loc, const std::string& path, const std::string& file,
                          std::vector<hsize_t>* dims_out) {
  Id dset = open_dataset(loc, path, file);
  check_stored(dset, file, path);
  std::vector<hsize_t> dims = dataset_shape(dset);
  size_t n = 1;
  for (hsize_t d : dims) n *= d;
  std::vector<T> out(n);
  if (n > 0 && H5Dread(dset, native_type<T>(), H5S_ALL, H5S_ALL, H5P_DEFAULT, out.data()) < 0)
    fail(file + ": cannot read " + path, exit_code::usage);
  if (dims_out) *dims_out = dims;
  return out;
}

#define RBM_H5_INSTANTIATE(T)                                                            \
  template void write_array<T>(hid_t, const std::string&, const T*,                      \
                               const std::vector<hsize_t>&, Storage);                    \
  template std::vector<T> read_array<T>(hid_t, const std::string&, const std::string&, \
                                        std::vector<hsize_t>*);
RBM_H5_INSTANTIATE(uint8_t)
RBM_H5_INSTANTIATE(int32_t)
RBM_H5_INSTANTIATE(int64_t)
RBM_H5_INSTANTIATE(uint64_t)
RBM_H5_INSTANTIATE(float)
RBM_H5_INSTANTIATE(double)
#undef RBM_H5_INSTANTIATE

namespace {
void write_scalar_attr(hid_t obj, const std::string& name, hid_t type, const void* value) {
  if (H5Aexists(obj, name.c_str()) > 0) H5Adelete(obj, name.c_str());
  Id space(H5Screate(H5S_SCALAR), H5Sclose);
  Id attr(H5Acreate2(obj, name.c_str(), type, space, H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
  if (attr < 0 || H5Awrite(attr, type, value) < 0) fail("cannot write attribute " + name);
}

Id open_attr(hid_t obj, const std::string& name) {
  hid_t a = H5Aopen(obj, name.c_str(), H5P_DEFAULT);
  if (a < 0) fail("missing attribute " + name);
  return Id(a, H5Aclose);
}
}  // namespace

void write_attr(hid_t obj, const std::string& name, int64_t value) {
  // Small integers are stored as int32 (the schema says int32 for rows/cols/format_version).
  if (value >= INT32_MIN && value <= INT32_MAX) {
    int32_t v = static_cast<int32_t>(value);
    write_scalar_attr(obj, name, H5T_NATIVE_INT32, &v);
  } else {
    write_scalar_attr(obj, name, H5T_NATIVE_INT64, &value);
  }
}

void write_attr(hid_t obj, const std::string& name, double value) {
  write_scalar_attr(obj, name, H5T_NATIVE_DOUBLE, &value);
}

void write_attr(hid_t obj, const std::string& name, const std::string& value) {
  Id type(H5Tcopy(H5T_C_S1), H5Tclose);
  H5Tset_size(type, value.empty() ? 1 : value.size());
  H5Tset_strpad(type, H5T_STR_NULLTERM);
  H5Tset_cset(type, H5T_CSET_UTF8);
  if (H5Aexists(obj, name.c_str()) > 0) H5Adelete(obj, name.c_str());
  Id space(H5Screate(H5S_SCALAR), H5Sclose);
  Id attr(H5Acreate2(obj, name.c_str(), type, space, H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
  if (attr < 0 || H5Awrite(attr, type, value.c_str()) < 0) fail("cannot write attribute " + name);
}

bool has_attr(hid_t obj, const std::string& name) {
  htri_t e = H5Aexists(obj, name.c_str());
  if (e < 0) H5Eclear2(H5E_DEFAULT);
  return e > 0;
}

int64_t read_attr_int(hid_t obj, const std::string& name) {
  Id attr = open_attr(obj, name);
  Id ftype(H5Aget_type(attr), H5Tclose);
  Id space(H5Aget_space(attr), H5Sclose);
  // Strict: a float (3.7) or an array is not silently converted, and an unsigned
  // value above INT64_MAX (2^64 - 1) is not clipped.
  if (H5Tget_class(ftype) != H5T_INTEGER || H5Sget_simple_extent_npoints(space) != 1)
    throw UsageError("attribute " + name + " is not an integer scalar");
  if (H5Tget_sign(ftype) == H5T_SGN_NONE) {
    uint64_t u = 0;
    if (H5Aread(attr, H5T_NATIVE_UINT64, &u) < 0) fail("cannot read attribute " + name);
    if (u > static_cast<uint64_t>(INT64_MAX))
      throw UsageError(fmt("attribute ", name, " = ", u, " is out of range"));
    return static_cast<int64_t>(u);
  }
  int64_t v = 0;
  if (H5Aread(attr, H5T_NATIVE_INT64, &v) < 0) fail("cannot read attribute " + name);
  return v;
}

double read_attr_double(hid_t obj, const std::string& name) {
  Id attr = open_attr(obj, name);
  double v = 0;
  if (H5Aread(attr, H5T_NATIVE_DOUBLE, &v) < 0) fail("attribute " + name + " is not a number");
  return v;
}

std::string read_attr_string(hid_t obj, const std::string& name) {
  Id attr = open_attr(obj, name);
  Id ftype(H5Aget_type(attr), H5Tclose);
  if (H5Tget_class(ftype) != H5T_STRING) throw Error("attribute " + name + " is not a string");
  if (H5Tis_variable_str(ftype) > 0) {
    Id mtype(H5Tcopy(H5T_C_S1), H5Tclose);
    H5Tset_size(mtype, H5T_VARIABLE);
    H5Tset_cset(mtype, H5Tget_cset(ftype));
    char* s = nullptr;
    if (H5Aread(attr, mtype, &s) < 0) fail("cannot read attribute " + name);
    std::string out = s ? s : "";
    H5free_memory(s);
    return out;
  }
  size_t size = H5Tget_size(ftype);
  Id mtype(H5Tcopy(H5T_C_S1), H5Tclose);
  H5Tset_size(mtype, size + 1);
  H5Tset_strpad(mtype, H5T_STR_NULLTERM);
  H5Tset_cset(mtype, H5Tget_cset(ftype));
  std::string buf(size + 1, '\0');
  if (H5Aread(attr, mtype, buf.data()) < 0) fail("cannot read attribute " + name);
  buf.resize(std::strlen(buf.c_str()));
  return buf;
}

}  // namespace rbm::h5
