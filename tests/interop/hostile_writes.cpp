// Property test driver: random tensors with hostile names and shapes (bytes
// that are not UTF-8, control characters, huge ranks, zero dims, empty names,
// dots and slashes) written in every format. Whatever a writer commits must
// read back equal through the library's reader; a tensor it cannot store
// must be refused before anything is written.
//
//   hostile_writes DIR SEED ROUNDS
//
// writes DIR/<round>-<format>[.ext] and DIR/manifest.jsonl: one line per
// committed checkpoint with what it holds (names and data in hex), for the
// peers (numpy, torch, safetensors) to check in test_hostile_writes.py.
// Exits 1 on the first read-back that differs or a commit that fails.
#include <fstream>
#include <iostream>
#include <random>
#include <map>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "ckpt/format/checkpoint.hpp"

namespace fs = std::filesystem;

namespace {

struct Tensor {
  std::string name;
  ckpt::VariableMeta meta;
  std::vector<std::byte> bytes;
};

std::string hex(std::string_view bytes) {
  std::string out;
  for (char c : bytes) out += fmt::format("{:02x}", static_cast<unsigned char>(c));
  return out;
}

class Generator {
 public:
  explicit Generator(std::uint64_t seed) : rng_(seed) {
    for (const auto& info : ckpt::all_dtypes()) {
      if (info.size != 0) dtypes_.push_back(info.dtype);
    }
  }

  std::string name() {
    static const std::vector<std::string> kPieces = {
        "w", "layer", ".", "..", "/", "\\", "\n", "\x1b[31m", "\x01", std::string(1, '\0'), "\xff\xfe", "\xc3",
        "\xed\xa0\x80" /* a surrogate */, "\xc0\xaf" /* overlong '/' */, "\xc3\xa9", "\xe4\xb8\xad",
        "\xf0\x9f\x98\x80", "snapshot_done", ".ckpt-tmp-", "out", " ", "'", "\"", "%", "__metadata__", ".npy"};
    std::string name;
    if (pick(20) == 0) return std::string(pick(2) == 0 ? 256 : 300, 'n');
    for (std::size_t parts = pick(5); parts > 0; --parts) name += kPieces[pick(kPieces.size())];
    return name;
  }

  ckpt::Shape shape() {
    switch (pick(12)) {
      case 0: return ckpt::Shape(33, 1);            // over numpy's 32 dimensions
      case 1: return ckpt::Shape(10000, 1);         // a meta over 64 KiB
      case 2: return ckpt::Shape(1 + pick(200), 1);
      case 3: return {0, std::int64_t{1} << 40};    // no elements, a huge dim
      case 4: return {std::int64_t{1} << 62, 0};
      default: {
        ckpt::Shape shape(pick(5));
        for (auto& dim : shape) dim = static_cast<std::int64_t>(pick(4) == 0 ? 0 : 1 + pick(5));
        return shape;
      }
    }
  }

  Tensor tensor() {
    for (;;) {
      ckpt::DType dtype = dtypes_[pick(dtypes_.size())];
      auto meta = ckpt::VariableMeta::make(dtype, shape());
      if (!meta.ok()) continue;  // over 64 bits: not a tensor at all
      std::vector<std::byte> bytes(meta->byte_size());
      for (auto& byte : bytes) byte = static_cast<std::byte>(dtype == ckpt::DType::kBool ? pick(2) : pick(256));
      return {name(), std::move(meta).value(), std::move(bytes)};
    }
  }

  std::size_t pick(std::size_t bound) { return static_cast<std::size_t>(rng_() % bound); }

 private:
  std::mt19937_64 rng_;
  std::vector<ckpt::DType> dtypes_;
};

std::string_view extension(std::string_view format) {
  if (format == "npz") return ".npz";
  if (format == "torch") return ".pt";
  if (format == "safetensors") return ".safetensors";
  return "";
}

// OneFlow's kChar is int8 in every other format; the bytes are the same.
bool same_meta(const ckpt::VariableMeta& read, const ckpt::VariableMeta& written, std::string_view format) {
  if (written.dtype() == ckpt::DType::kChar && !format.starts_with("oneflow")) {  // only OneFlow tells kChar from kInt8
    return read.dtype() == ckpt::DType::kInt8 && read.shape() == written.shape();
  }
  return read == written;
}

// The accepted tensors read back through the library: same names, metas, bytes.
bool reads_back(const fs::path& path, std::string_view format, const std::vector<Tensor>& accepted) {
  ckpt::OpenOptions options{.format = std::string(format)};
  options.npy.void2_as_bfloat16 = true;  // how npy and npz hold bfloat16 (spec/npy-npz.md)
  auto reader = ckpt::open_checkpoint(path, options);
  if (!reader.ok()) {
    std::cerr << format << ": committed, but its reader refuses it: " << reader.error().describe() << "\n";
    return false;
  }
  const auto& tensors = (*reader)->tensors();
  if (tensors.size() != accepted.size()) {
    std::cerr << format << ": wrote " << accepted.size() << " tensors, read " << tensors.size() << "\n";
    return false;
  }
  for (const Tensor& tensor : accepted) {
    const ckpt::TensorInfo* info = (*reader)->find(tensor.name);
    std::vector<std::byte> bytes(tensor.bytes.size());
    auto source = info != nullptr ? (*reader)->open(tensor.name) : ckpt::Error(ckpt::ErrorCode::kUnknownVariable, "");
    bool same = info != nullptr && same_meta(info->meta, tensor.meta, format) && source.ok() &&
                (*source)->read_at(0, bytes).ok() && bytes == tensor.bytes;
    if (!same) {
      std::cerr << format << ": tensor '" << hex(tensor.name) << "' " << ckpt::dtype_name(tensor.meta.dtype())
                << ckpt::shape_to_string(tensor.meta.shape()) << " does not read back equal; ";
      if (info == nullptr) {
        std::cerr << "no such name; the reader has:\n";
        for (const auto& found : tensors) std::cerr << "  '" << hex(found.name) << "'\n";
      } else {
        std::cerr << "read " << ckpt::dtype_name(info->meta.dtype()) << ckpt::shape_to_string(info->meta.shape())
                  << (source.ok() ? "" : " " + source.error().describe()) << "\n";
      }
      return false;
    }
  }
  return true;
}

nlohmann::json manifest_line(const fs::path& path, std::string_view format, const std::vector<Tensor>& accepted) {
  nlohmann::json tensors = nlohmann::json::array();
  for (const Tensor& tensor : accepted) {
    tensors.push_back({{"name", hex(tensor.name)},
                       {"dtype", std::string(ckpt::dtype_name(tensor.meta.dtype()))},
                       {"shape", tensor.meta.shape()},
                       {"data", hex({reinterpret_cast<const char*>(tensor.bytes.data()), tensor.bytes.size()})}});
  }
  return {{"path", path.string()}, {"format", std::string(format)}, {"tensors", tensors}};
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) {
    std::cerr << "usage: hostile_writes DIR SEED ROUNDS\n";
    return 2;
  }
  const fs::path dir = argv[1];
  Generator generator(std::stoull(argv[2]));
  const int rounds = std::stoi(argv[3]);
  std::ofstream manifest(dir / "manifest.jsonl");
  int added_count = 0;
  std::map<std::string, int> refused;  // code -> how often
  for (int round = 0; round < rounds; ++round) {
    std::vector<Tensor> tensors;
    for (std::size_t n = 1 + generator.pick(4); n > 0; --n) tensors.push_back(generator.tensor());
    for (std::string_view format : ckpt::checkpoint_formats()) {
      const fs::path path = dir / fmt::format("{}-{}{}", round, format, extension(format));
      auto writer = ckpt::create_checkpoint(path, format);
      if (!writer.ok()) {
        std::cerr << writer.error().describe() << "\n";
        return 1;
      }
      std::vector<Tensor> accepted;
      for (const Tensor& tensor : tensors) {
        auto added = (*writer)->add(tensor.name, tensor.meta, ckpt::MemorySource(tensor.bytes));
        if (added.ok()) {
          accepted.push_back(tensor);
          ++added_count;
        } else {
          ++refused[ckpt::code_id(added.error().code())];
        }
      }
      auto status = (*writer)->commit();
      if (!status.ok()) {
        // Refusing the whole checkpoint is allowed only before publishing anything.
        if (fs::exists(path)) {
          std::cerr << format << ": commit failed but left " << path << "\n";
          return 1;
        }
        ++refused[code_id(status.error().code())];
        continue;
      }
      if (!reads_back(path, format, accepted)) return 1;
      manifest << manifest_line(path, format, accepted).dump() << "\n";
    }
  }
  fmt::print("{} rounds; added {}; refused {}\n", rounds, added_count, nlohmann::json(refused).dump());
  return 0;
}
