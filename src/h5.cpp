#include "rbm/h5.hpp"

#include "rbm/errors.hpp"

#include <algorithm>
#include <climits>
#include <cstdio>
#include <cstring>

namespace rbm::h5 {

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
// H5Ewalk callback, walking DOWNWARD (from the API call towards the function that
// first failed): the last description seen is the innermost cause, e.g. the sec2
// driver's "file write failed: ... errno = 28, error message = 'No space left on
// device' ..." under the outer "can't write data".
herr_t innermost(unsigned, const H5E_error2_t* e, void* out) {
  if (e->desc && *e->desc) *static_cast<std::string*>(out) = e->desc;
  return 0;
}
}  // namespace

void fail(const std::string& context) {
  std::string desc;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, innermost, &desc);
  H5Eclear2(H5E_DEFAULT);
  if (desc.empty()) desc = "HDF5 call failed";
  throw Error(context + ": " + desc);
}

Id open_file(const std::string& path, bool writable) {
  init();
  htri_t is_h5 = H5Fis_hdf5(path.c_str());
  if (is_h5 <= 0) {
    H5Eclear2(H5E_DEFAULT);
    FILE* f = std::fopen(path.c_str(), "rb");
    if (!f) throw UsageError(path + ": cannot open (no such file or not readable)");
    std::fclose(f);
    throw UsageError(path + ": not an HDF5 file (convert MNIST IDX files with mnist2h5)");
  }
  hid_t id = H5Fopen(path.c_str(), writable ? H5F_ACC_RDWR : H5F_ACC_RDONLY, H5P_DEFAULT);
  if (id < 0) fail(path + ": cannot open HDF5 file");
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
      htri_t e = H5Lexists(loc, prefix.c_str(), H5P_DEFAULT);
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
  hid_t id = H5Dopen2(loc, path.c_str(), H5P_DEFAULT);
  if (id < 0) fail(file + ": " + path + " is not a dataset");
  return Id(id, H5Dclose);
}

Id open_object(hid_t loc, const std::string& path) {
  hid_t id = H5Oopen(loc, path.c_str(), H5P_DEFAULT);
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
  std::vector<hsize_t> dims = dataset_shape(dset);
  size_t n = 1;
  for (hsize_t d : dims) n *= d;
  std::vector<T> out(n);
  if (n > 0 && H5Dread(dset, native_type<T>(), H5S_ALL, H5S_ALL, H5P_DEFAULT, out.data()) < 0)
    fail(file + ": cannot read " + path);
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
