// A checkpoint directory built from the fuzz input: files, directories and
// symbolic links with names and targets drawn from the layout's vocabulary.
// The validator and the reader must never crash, must agree on validity,
// and every variable the reader lists must read back in full.
#include <fuzzer/FuzzedDataProvider.h>

#include <array>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <unistd.h>

#include "ckpt/format/snapshot.hpp"
#include "ckpt/format/validate.hpp"

namespace fs = std::filesystem;

namespace {

constexpr std::array<const char*, 12> kNames = {"snapshot_done", "out", "meta", "w", "b", "l1.weight",
                                                 "pickled_data", "model.mlir", "tensor_1", "x\ny", ".a.ckpt-tmp-1", "z"};
constexpr std::array<const char*, 6> kTargets = {"../../outside", "/etc/hostname", "../w/out", "out", "../..", "w"};

std::string pick_name(FuzzedDataProvider& input) {
  if (input.ConsumeBool()) return kNames[input.ConsumeIntegralInRange<std::size_t>(0, kNames.size() - 1)];
  std::string name = input.ConsumeRandomLengthString(12);
  return name.empty() || name == "." || name == ".." || name.find('/') != std::string::npos || name.find('\0') != std::string::npos
             ? "n"
             : name;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const fs::path base = [] {
    std::string pattern = (fs::temp_directory_path() / "ckpt-fuzz-XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr) std::abort();
    return fs::path(pattern);
  }();
  fs::path root = base / "ckpt";
  std::error_code ec;
  fs::remove_all(root, ec);
  fs::create_directories(root / "outside-sibling", ec);

  FuzzedDataProvider input(data, size);
  std::vector<fs::path> directories = {root};
  int entries = input.ConsumeIntegralInRange(0, 12);
  for (int i = 0; i < entries && input.remaining_bytes() > 0; ++i) {
    fs::path parent = directories[input.ConsumeIntegralInRange<std::size_t>(0, directories.size() - 1)];
    fs::path path = parent / pick_name(input);
    switch (input.ConsumeIntegralInRange(0, 2)) {
      case 0: {
        std::ofstream(path, std::ios::binary) << input.ConsumeRandomLengthString(256);
        break;
      }
      case 1:
        if (fs::create_directory(path, ec)) directories.push_back(path);
        break;
      default:
        fs::create_symlink(kTargets[input.ConsumeIntegralInRange<std::size_t>(0, kTargets.size() - 1)], path, ec);
    }
  }

  auto report = ckpt::validate_snapshot(root);
  auto snapshot = ckpt::Snapshot::open(root);
  bool reader_ok = snapshot.ok() || snapshot.error().code() == ckpt::ErrorCode::kUnsupportedLayout;
  if (reader_ok != report.valid()) std::abort();  // fail-fast reader and validator disagree
  if (snapshot.ok()) {
    for (const auto& variable : snapshot->variables()) {
      std::vector<std::byte> bytes(variable.byte_size);
      if (!snapshot->read(variable.name, bytes).ok()) std::abort();
    }
  }
  return 0;
}
