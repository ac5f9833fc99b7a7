#include "io/hdf5.hpp"

#include <hdf5.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <type_traits>

#include "io/error.hpp"

namespace ptq {

static_assert(std::is_same_v<hid_t, std::int64_t>, "hid_t is stored as int64_t in hdf5.hpp");

namespace {

template <typename T>
hid_t native_type() {
  if constexpr (std::is_same_v<T, float>) return H5T_NATIVE_FLOAT;
  else if constexpr (std::is_same_v<T, double>) return H5T_NATIVE_DOUBLE;
  else if constexpr (std::is_same_v<T, std::int32_t>) return H5T_NATIVE_INT32;
  else if constexpr (std::is_same_v<T, std::int64_t>) return H5T_NATIVE_INT64;
  else if constexpr (std::is_same_v<T, std::uint8_t>) return H5T_NATIVE_UINT8;
  else static_assert(sizeof(T) == 0, "unsupported HDF5 element type");
}

// Closes an HDF5 handle at scope exit with the matching close function.
class Handle {
 public:
  Handle(hid_t id, herr_t (*close)(hid_t)) : id_(id), close_(close) {}
  ~Handle() {
    if (id_ >= 0) close_(id_);
  }
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  hid_t get() const { return id_; }
  bool ok() const { return id_ >= 0; }

 private:
  hid_t id_;
  herr_t (*close_)(hid_t);
};

InputError h5_error(const std::filesystem::path& file, const std::string& object,
                    const std::string& what) {
  return InputError(file.string() + ": " + object + ": " + what);
}

// What the failed write's system call said (HDF5 leaves errno set), e.g. "No
// space left on device".
std::string system_error_text() {
  return errno != 0 ? std::string(std::strerror(errno)) : "an HDF5 error (disk full?)";
}

// HDF5 prints its own error stack by default; we report through exceptions.
// Nor may it close files at exit: after a write failed (disk full), its
// half-closed file crashes libhdf5's exit handler, turning exit 2 into a
// segfault. Every file is closed explicitly (commit, destructors) anyway.
void silence_hdf5() {
  static const bool done = [] {
    H5dont_atexit();
    return H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr) >= 0;
  }();
  (void)done;
}

bool link_exists(hid_t file, const std::string& path) {
  // Walk the path: H5Lexists fails (rather than returning false) on missing parents.
  std::size_t pos = 0;
  while (pos != std::string::npos) {
    pos = path.find('/', pos + 1);
    std::string prefix = path.substr(0, pos);
    if (prefix.empty() || prefix == "/") continue;
    if (H5Lexists(file, prefix.c_str(), H5P_DEFAULT) <= 0) return false;
  }
  return true;
}

std::string absolute(const std::string& path) { return path.empty() || path[0] != '/' ? "/" + path : path; }

}  // namespace

// ---------------------------------------------------------------- writer

H5Writer::H5Writer(const std::filesystem::path& final_path) : output_(final_path, "") {
  silence_hdf5();
  Handle fapl(H5Pcreate(H5P_FILE_ACCESS), H5Pclose);
  // Pin the format so the bytes do not depend on library defaults.
  H5Pset_libver_bounds(fapl.get(), H5F_LIBVER_V18, H5F_LIBVER_V18);
  // The temporary file is already locked by its OutputFile (an flock that marks
  // it as in use, io/output_path.hpp); HDF5's own flock would conflict with it.
  H5Pset_file_locking(fapl.get(), false, true);
  Handle fcpl(H5Pcreate(H5P_FILE_CREATE), H5Pclose);
  H5Pset_obj_track_times(fcpl.get(), false);
  file_ = H5Fcreate(output_.temp_path().c_str(), H5F_ACC_TRUNC, fcpl.get(), fapl.get());
  if (file_ < 0)
    throw h5_error(output_.final_path(), "/",
                   "cannot create the HDF5 file (is the folder writable?)");
  ocpl_ = H5Pcreate(H5P_DATASET_CREATE);
  H5Pset_obj_track_times(ocpl_, false);
}

H5Writer::~H5Writer() {
  if (ocpl_ >= 0) H5Pclose(ocpl_);
  if (file_ >= 0) H5Fclose(file_);  // before output_ removes the temporary file
}

template <typename T>
void H5Writer::write(const std::string& path, std::span<const T> data,
                     const std::vector<std::int64_t>& shape) {
  std::vector<hsize_t> dims(shape.begin(), shape.end());
  hsize_t count = 1;
  for (hsize_t d : dims) count *= d;
  PTQ_ASSERT(count == data.size());
  Handle space(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr), H5Sclose);
  const std::string abs = absolute(path);
  const Handle parent(open_group(abs.substr(0, abs.rfind('/'))), H5Oclose);
  if (!parent.ok()) throw h5_error(output_.final_path(), path, "cannot create its parent group");
  Handle set(H5Dcreate2(file_, abs.c_str(), native_type<T>(), space.get(), H5P_DEFAULT, ocpl_,
                        H5P_DEFAULT),
             H5Dclose);
  if (!set.ok())
    throw h5_error(output_.final_path(), path, "cannot create dataset (does it exist already?)");
  errno = 0;
  if (H5Dwrite(set.get(), native_type<T>(), H5S_ALL, H5S_ALL, H5P_DEFAULT, data.data()) < 0)
    throw h5_error(output_.final_path(), path, "write failed: " + system_error_text());
}

std::int64_t H5Writer::open_group(const std::string& path) {
  const std::string abs = absolute(path);
  if (abs == "/" || link_exists(file_, abs)) return H5Oopen(file_, abs.c_str(), H5P_DEFAULT);
  Handle gcpl(H5Pcreate(H5P_GROUP_CREATE), H5Pclose);
  H5Pset_obj_track_times(gcpl.get(), false);
  // Missing parents one level at a time: groups that HDF5 creates as
  // intermediates record creation times, so the file's bytes would vary by run.
  // Parents are visited outermost first, so each one's own parents are known
  // to exist when it is looked up, and once one is missing so are all below
  // it: one lookup per level, not a walk of the whole path per level (cubic
  // in the depth; a hostile name of 800 levels took a minute).
  bool missing = false;
  for (auto slash = abs.find('/', 1); slash != std::string::npos; slash = abs.find('/', slash + 1)) {
    const std::string parent = abs.substr(0, slash);
    if (!missing && H5Lexists(file_, parent.c_str(), H5P_DEFAULT) > 0) continue;
    missing = true;
    const Handle group(H5Gcreate2(file_, parent.c_str(), H5P_DEFAULT, gcpl.get(), H5P_DEFAULT),
                       H5Gclose);
    if (!group.ok()) return -1;
  }
  return H5Gcreate2(file_, abs.c_str(), H5P_DEFAULT, gcpl.get(), H5P_DEFAULT);
}

namespace {

void write_attribute(hid_t object, const std::string& name, hid_t type, const void* value,
                     const std::filesystem::path& file, const std::string& where) {
  Handle space(H5Screate(H5S_SCALAR), H5Sclose);
  if (H5Aexists(object, name.c_str()) > 0) H5Adelete(object, name.c_str());
  Handle attr(H5Acreate2(object, name.c_str(), type, space.get(), H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
  if (!attr.ok() || H5Awrite(attr.get(), type, value) < 0)
    throw h5_error(file, where, "cannot write attribute " + name);
}

}  // namespace

void H5Writer::set_attribute(const std::string& object, const std::string& name,
                             const std::string& value) {
  Handle obj(open_group(object), H5Oclose);
  if (!obj.ok()) throw h5_error(output_.final_path(), object, "cannot open or create object");
  Handle type(H5Tcopy(H5T_C_S1), H5Tclose);
  H5Tset_size(type.get(), std::max<std::size_t>(1, value.size()));
  H5Tset_cset(type.get(), H5T_CSET_UTF8);
  write_attribute(obj.get(), name, type.get(), value.data(), output_.final_path(), object);
}

void H5Writer::set_attribute(const std::string& object, const std::string& name, std::int64_t value) {
  Handle obj(open_group(object), H5Oclose);
  if (!obj.ok()) throw h5_error(output_.final_path(), object, "cannot open or create object");
  write_attribute(obj.get(), name, H5T_NATIVE_INT64, &value, output_.final_path(), object);
}

void H5Writer::set_attribute(const std::string& object, const std::string& name, double value) {
  Handle obj(open_group(object), H5Oclose);
  if (!obj.ok()) throw h5_error(output_.final_path(), object, "cannot open or create object");
  write_attribute(obj.get(), name, H5T_NATIVE_DOUBLE, &value, output_.final_path(), object);
}

void H5Writer::commit() {
  PTQ_ASSERT(file_ >= 0);
  errno = 0;
  const herr_t closed = H5Fclose(file_);
  file_ = -1;
  if (closed < 0)
    throw h5_error(output_.final_path(), "/", "closing the file failed: " + system_error_text());
  output_.commit();
}

template void H5Writer::write<float>(const std::string&, std::span<const float>, const std::vector<std::int64_t>&);
template void H5Writer::write<double>(const std::string&, std::span<const double>, const std::vector<std::int64_t>&);
template void H5Writer::write<std::int32_t>(const std::string&, std::span<const std::int32_t>, const std::vector<std::int64_t>&);
template void H5Writer::write<std::int64_t>(const std::string&, std::span<const std::int64_t>, const std::vector<std::int64_t>&);
template void H5Writer::write<std::uint8_t>(const std::string&, std::span<const std::uint8_t>, const std::vector<std::int64_t>&);

// ---------------------------------------------------------------- reader

H5Reader::H5Reader(const std::filesystem::path& path) : path_(path) {
  silence_hdf5();
  if (!std::filesystem::exists(path)) throw input_error(path.string(), "an HDF5 file", "no such file");
  if (H5Fis_hdf5(path.c_str()) <= 0) throw input_error(path.string(), "an HDF5 file", "another format");
  file_ = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  if (file_ < 0) throw input_error(path.string(), "a readable HDF5 file", "a damaged file");
}

H5Reader::~H5Reader() {
  if (file_ >= 0) H5Fclose(file_);
}

bool H5Reader::has(const std::string& path) const { return link_exists(file_, absolute(path)); }

std::vector<std::int64_t> H5Reader::shape(const std::string& dataset) const {
  if (!has(dataset)) throw input_error(path_.string(), "dataset " + dataset, "missing");
  Handle set(H5Dopen2(file_, absolute(dataset).c_str(), H5P_DEFAULT), H5Dclose);
  if (!set.ok()) throw input_error(path_.string(), dataset + " to be a dataset", "a group");
  Handle space(H5Dget_space(set.get()), H5Sclose);
  const int rank = H5Sget_simple_extent_ndims(space.get());
  std::vector<hsize_t> dims(static_cast<std::size_t>(std::max(rank, 0)));
  H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr);
  return {dims.begin(), dims.end()};
}

std::vector<std::string> H5Reader::children(const std::string& group) const {
  if (!has(group) && absolute(group) != "/") throw input_error(path_.string(), "group " + group, "missing");
  Handle g(H5Gopen2(file_, absolute(group).c_str(), H5P_DEFAULT), H5Gclose);
  if (!g.ok()) throw input_error(path_.string(), group + " to be a group", "a dataset");
  std::vector<std::string> names;
  H5Literate(
      g.get(), H5_INDEX_NAME, H5_ITER_INC, nullptr,
      [](hid_t, const char* name, const H5L_info_t*, void* out) -> herr_t {
        static_cast<std::vector<std::string>*>(out)->emplace_back(name);
        return 0;
      },
      &names);
  std::sort(names.begin(), names.end());
  return names;
}

template <typename T>
std::vector<T> H5Reader::read(const std::string& dataset) const {
  const auto dims = shape(dataset);
  std::size_t count = 1;
  for (auto d : dims) count *= static_cast<std::size_t>(d);
  std::vector<T> out(count);
  Handle set(H5Dopen2(file_, absolute(dataset).c_str(), H5P_DEFAULT), H5Dclose);
  // HDF5 converts between numeric types on read; a failure means an incompatible class.
  if (H5Dread(set.get(), native_type<T>(), H5S_ALL, H5S_ALL, H5P_DEFAULT, out.data()) < 0)
    throw input_error(path_.string() + ": " + dataset, "numeric data", "an unreadable or non-numeric dataset");
  return out;
}

template std::vector<float> H5Reader::read<float>(const std::string&) const;
template std::vector<double> H5Reader::read<double>(const std::string&) const;
template std::vector<std::int32_t> H5Reader::read<std::int32_t>(const std::string&) const;
template std::vector<std::int64_t> H5Reader::read<std::int64_t>(const std::string&) const;
template std::vector<std::uint8_t> H5Reader::read<std::uint8_t>(const std::string&) const;

namespace {

Handle open_attribute(hid_t file, const std::filesystem::path& path, const std::string& object,
                      const std::string& name) {
  Handle obj(H5Oopen(file, absolute(object).c_str(), H5P_DEFAULT), H5Oclose);
  if (!obj.ok() || H5Aexists(obj.get(), name.c_str()) <= 0)
    throw input_error(path.string() + ": " + object, "attribute " + name, "missing");
  return Handle(H5Aopen(obj.get(), name.c_str(), H5P_DEFAULT), H5Aclose);
}

}  // namespace

bool H5Reader::has_attribute(const std::string& object, const std::string& name) const {
  if (absolute(object) != "/" && !has(object)) return false;
  Handle obj(H5Oopen(file_, absolute(object).c_str(), H5P_DEFAULT), H5Oclose);
  return obj.ok() && H5Aexists(obj.get(), name.c_str()) > 0;
}

std::string H5Reader::string_attribute(const std::string& object, const std::string& name) const {
  Handle attr = open_attribute(file_, path_, object, name);
  Handle type(H5Aget_type(attr.get()), H5Tclose);
  if (H5Tget_class(type.get()) != H5T_STRING || H5Tis_variable_str(type.get()) > 0)
    throw input_error(path_.string() + ": " + object + "@" + name, "a fixed-length string", "another type");
  std::string value(H5Tget_size(type.get()), '\0');
  H5Aread(attr.get(), type.get(), value.data());
  value.resize(value.find('\0') == std::string::npos ? value.size() : value.find('\0'));
  return value;
}

std::int64_t H5Reader::int_attribute(const std::string& object, const std::string& name) const {
  Handle attr = open_attribute(file_, path_, object, name);
  std::int64_t value = 0;
  if (H5Aread(attr.get(), H5T_NATIVE_INT64, &value) < 0)
    throw input_error(path_.string() + ": " + object + "@" + name, "an integer", "another type");
  return value;
}

double H5Reader::float_attribute(const std::string& object, const std::string& name) const {
  Handle attr = open_attribute(file_, path_, object, name);
  double value = 0;
  if (H5Aread(attr.get(), H5T_NATIVE_DOUBLE, &value) < 0)
    throw input_error(path_.string() + ": " + object + "@" + name, "a number", "another type");
  return value;
}

}  // namespace ptq
