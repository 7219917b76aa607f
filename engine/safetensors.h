// Safetensors checkpoints, memory-mapped: one file or shards listed by model.safetensors.index.json.
// Tensors are never copied: a TensorRef points into the mapping, in the stored dtype.
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "engine/dtype.h"

namespace conflux {

// Any problem with a checkpoint's files; the message names the file (and tensor or field).
struct CheckpointError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct TensorRef {
  std::string name;
  std::string file;             // the file it lives in (for error messages)
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  const void* data = nullptr;   // into the read-only mapping
  size_t nbytes = 0;            // payload bytes; for Q8_0 / Q4_0 the packed weights plus their scales
  // Q8_0 / Q4_0 only: (rows, cols / 32) f16 block scales. `shape` is then the logical (rows, cols).
  const uint16_t* scales = nullptr;

  int64_t numel() const;
  std::string shape_str() const;  // "[a, b]"
  bool valid() const { return data != nullptr; }
};

// A read-only memory map of a whole file.
class MappedFile {
 public:
  explicit MappedFile(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

// One .safetensors file: header parsed and checked against the file size.
class SafetensorsFile {
 public:
  explicit SafetensorsFile(const std::string& path);
  const std::map<std::string, TensorRef>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const std::string& path() const { return file_.path(); }

 private:
  MappedFile file_;
  std::map<std::string, TensorRef> tensors_;
  std::map<std::string, std::string> metadata_;
};

// All tensors of a checkpoint folder (or a single .safetensors path). A quantized matrix is stored as
// two tensors, `NAME` (I8 (rows, cols) for Q8_0, U8 (rows, cols / 2) for Q4_0, two 4-bit weights per
// byte) and `NAME.scales` (F16 (rows, cols / 32)); the checkpoint pairs them into one Q8_0 / Q4_0
// TensorRef called NAME of logical shape (rows, cols).
class Checkpoint {
 public:
  explicit Checkpoint(const std::string& path);
  // nullptr when absent.
  const TensorRef* find(const std::string& name) const;
  // Throws CheckpointError "missing tensor NAME in DIR".
  const TensorRef& get(const std::string& name) const;
  const std::string& dir() const { return dir_; }
  std::vector<std::string> names() const;
  size_t total_bytes() const;

 private:
  std::string dir_;
  void pair_quantized();
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, const TensorRef*> index_;
  std::vector<std::unique_ptr<TensorRef>> paired_;  // the quantized tensors assembled from data + scales
};

// A tensor to write: the bytes are taken as they are, in `dtype`.
struct TensorToWrite {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  const void* data = nullptr;
};

// Writes a safetensors file (payloads in the given order, 8-byte aligned header).
void write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

}  // namespace conflux
