// Safetensors parsing with every header field checked against the file, and the writer.
// Format: u64 little-endian header length N, N bytes of JSON {name: {dtype, shape, data_offsets}},
// then the payload; offsets are relative to the payload start.
#include "engine/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

namespace conflux {

namespace fs = std::filesystem;
using nlohmann::json;

int64_t TensorRef::numel() const {
  int64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

std::string TensorRef::shape_str() const {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

MappedFile::MappedFile(const std::string& path) : path_(path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw CheckpointError(path + ": cannot open: " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    ::close(fd);
    throw CheckpointError(path + ": cannot stat: " + std::strerror(errno));
  }
  size_ = size_t(st.st_size);
  if (size_ > 0) {
    void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      ::close(fd);
      throw CheckpointError(path + ": mmap failed: " + std::strerror(errno));
    }
    data_ = static_cast<const uint8_t*>(p);
  }
  ::close(fd);
}

MappedFile::~MappedFile() {
  if (data_) ::munmap(const_cast<uint8_t*>(data_), size_);
}

SafetensorsFile::SafetensorsFile(const std::string& path) : file_(path) {
  constexpr size_t kLengthPrefix = 8;
  if (file_.size() < kLengthPrefix)
    throw CheckpointError(path + ": truncated: " + std::to_string(file_.size()) +
                          " bytes, too short for the 8-byte header length");
  uint64_t header_len = 0;
  std::memcpy(&header_len, file_.data(), 8);  // little-endian host
  if (header_len > file_.size() - kLengthPrefix)
    throw CheckpointError(path + ": header length " + std::to_string(header_len) + " exceeds the file size " +
                          std::to_string(file_.size()) + " (truncated or not a safetensors file)");
  const char* hdr = reinterpret_cast<const char*>(file_.data() + kLengthPrefix);
  json j;
  try {
    j = json::parse(hdr, hdr + header_len);
  } catch (const json::exception& e) {
    throw CheckpointError(path + ": header is not valid JSON: " + e.what());
  }
  if (!j.is_object()) throw CheckpointError(path + ": header is not a JSON object");
  const size_t payload_begin = kLengthPrefix + header_len;
  const size_t payload_size = file_.size() - payload_begin;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& name = it.key();
    if (name == "__metadata__") {
      if (it->is_object())
        for (auto m = it->begin(); m != it->end(); ++m)
          if (m->is_string()) metadata_[m.key()] = m->get<std::string>();
      continue;
    }
    const json& t = *it;
    auto bad = [&](const std::string& what) { return CheckpointError(path + ": tensor " + name + ": " + what); };
    if (!t.is_object() || !t.contains("dtype") || !t.contains("shape") || !t.contains("data_offsets"))
      throw bad("header entry needs dtype, shape and data_offsets");
    TensorRef ref;
    ref.name = name;
    ref.file = path;
    if (!t["dtype"].is_string() || !parse_dtype(t["dtype"].get<std::string>(), &ref.dtype))
      throw bad("unsupported dtype " + t["dtype"].dump() + " (F32, F16, BF16, and I8 / U8 with .scales are loaded)");
    if (!t["shape"].is_array()) throw bad("shape is not an array");
    for (const auto& d : t["shape"]) {
      if (!d.is_number_integer() || d.get<int64_t>() < 0) throw bad("shape has a bad dimension " + d.dump());
      ref.shape.push_back(d.get<int64_t>());
    }
    const json& off = t["data_offsets"];
    if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() || !off[1].is_number_unsigned())
      throw bad("data_offsets must be two non-negative integers");
    const uint64_t begin = off[0].get<uint64_t>(), end = off[1].get<uint64_t>();
    if (end < begin) throw bad("data_offsets end before they begin");
    if (end > payload_size)
      throw bad("data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) + ") run past the end of the data (" +
                std::to_string(payload_size) + " bytes): file truncated or header lies");
    ref.nbytes = size_t(end - begin);
    const uint64_t expect = uint64_t(ref.numel()) * dtype_size(ref.dtype);
    if (ref.nbytes != expect)
      throw bad("holds " + std::to_string(ref.nbytes) + " bytes but shape " + ref.shape_str() + " of " +
                std::string(dtype_name(ref.dtype)) + " needs " + std::to_string(expect));
    ref.data = file_.data() + payload_begin + begin;
    tensors_.emplace(name, std::move(ref));
  }
}

Checkpoint::Checkpoint(const std::string& path) {
  std::vector<std::string> files;
  if (fs::is_directory(path)) {
    dir_ = path;
    const fs::path index = fs::path(path) / "model.safetensors.index.json";
    const fs::path single = fs::path(path) / "model.safetensors";
    if (fs::exists(index)) {
      std::ifstream in(index);
      json j;
      try {
        j = json::parse(in);
      } catch (const json::exception& e) {
        throw CheckpointError(index.string() + ": not valid JSON: " + e.what());
      }
      if (!j.contains("weight_map") || !j["weight_map"].is_object())
        throw CheckpointError(index.string() + ": missing object field weight_map");
      std::map<std::string, bool> seen;
      for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
        if (!it->is_string()) throw CheckpointError(index.string() + ": weight_map[" + it.key() + "] is not a file name");
        const std::string f = it->get<std::string>();
        if (!seen[f]) {
          seen[f] = true;
          files.push_back((fs::path(path) / f).string());
        }
      }
    } else if (fs::exists(single)) {
      files.push_back(single.string());
    } else {
      throw CheckpointError(path + ": no model.safetensors or model.safetensors.index.json");
    }
  } else if (fs::exists(path)) {
    dir_ = fs::path(path).parent_path().string();
    files.push_back(path);
  } else {
    throw CheckpointError(path + ": no such file or directory");
  }
  for (const auto& f : files) {
    files_.push_back(std::make_unique<SafetensorsFile>(f));
    for (const auto& [name, ref] : files_.back()->tensors()) {
      auto [it, inserted] = index_.emplace(name, &ref);
      if (!inserted) throw CheckpointError(f + ": tensor " + name + " also appears in " + it->second->file);
    }
  }
  pair_quantized();
}

void Checkpoint::pair_quantized() {
  const std::string kSuffix = ".scales";
  std::vector<std::string> scale_names;
  for (const auto& [name, ref] : index_)
    if (name.size() > kSuffix.size() && name.compare(name.size() - kSuffix.size(), kSuffix.size(), kSuffix) == 0)
      scale_names.push_back(name);
  for (const std::string& sname : scale_names) {
    const TensorRef& scales = *index_.at(sname);
    const std::string name = sname.substr(0, sname.size() - kSuffix.size());
    auto bad = [&](const std::string& what) {
      return CheckpointError(scales.file + ": tensor " + sname + ": " + what);
    };
    auto it = index_.find(name);
    if (it == index_.end()) throw bad("block scales without their tensor " + name);
    const TensorRef& packed = *it->second;
    if (scales.dtype != DType::F16 || scales.shape.size() != 2)
      throw bad("block scales must be F16 of shape (rows, cols / 32), got " + std::string(dtype_name(scales.dtype)) +
                " " + scales.shape_str());
    if (packed.shape.size() != 2 || packed.shape[0] != scales.shape[0])
      throw bad("shape " + scales.shape_str() + " does not match " + packed.name + " " + packed.shape_str());
    const int64_t cols = scales.shape[1] * kQuantBlock;
    auto q = std::make_unique<TensorRef>(packed);
    if (packed.dtype == DType::I8 && packed.shape[1] == cols) {
      q->dtype = DType::Q8_0;
    } else if (packed.dtype == DType::U8 && packed.shape[1] * 2 == cols) {
      q->dtype = DType::Q4_0;
    } else {
      throw bad("expects " + packed.name + " to be I8 (" + std::to_string(packed.shape[0]) + ", " +
                std::to_string(cols) + ") for Q8_0 or U8 (" + std::to_string(packed.shape[0]) + ", " +
                std::to_string(cols / 2) + ") for Q4_0, got " + std::string(dtype_name(packed.dtype)) + " " +
                packed.shape_str());
    }
    if (reinterpret_cast<uintptr_t>(scales.data) % alignof(uint16_t) != 0) throw bad("scales are not 2-byte aligned");
    q->shape = {packed.shape[0], cols};
    q->scales = static_cast<const uint16_t*>(scales.data);
    q->nbytes = packed.nbytes + scales.nbytes;
    it->second = q.get();
    index_.erase(sname);
    paired_.push_back(std::move(q));
  }
}

const TensorRef* Checkpoint::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : it->second;
}

const TensorRef& Checkpoint::get(const std::string& name) const {
  const TensorRef* t = find(name);
  if (!t) throw CheckpointError(dir_ + ": missing tensor " + name);
  return *t;
}

std::vector<std::string> Checkpoint::names() const {
  std::vector<std::string> out;
  for (const auto& [n, r] : index_) out.push_back(n);
  return out;
}

size_t Checkpoint::total_bytes() const {
  size_t n = 0;
  for (const auto& [name, r] : index_) n += r->nbytes;
  return n;
}

void write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  json header = json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const auto& t : tensors) {
    uint64_t n = dtype_size(t.dtype);
    for (auto d : t.shape) n *= uint64_t(d);
    header[t.name] = {{"dtype", std::string(dtype_name(t.dtype))}, {"shape", t.shape}, {"data_offsets", {offset, offset + n}}};
    offset += n;
  }
  std::string h = header.dump();
  h.append((8 - h.size() % 8) % 8, ' ');  // payload starts 8-byte aligned
  std::ofstream out(path, std::ios::binary);
  if (!out) throw CheckpointError(path + ": cannot create");
  const uint64_t len = h.size();
  out.write(reinterpret_cast<const char*>(&len), 8);
  out.write(h.data(), std::streamsize(h.size()));
  for (const auto& t : tensors) {
    uint64_t n = dtype_size(t.dtype);
    for (auto d : t.shape) n *= uint64_t(d);
    out.write(static_cast<const char*>(t.data), std::streamsize(n));
  }
  if (!out) throw CheckpointError(path + ": write failed");
}

}  // namespace conflux
