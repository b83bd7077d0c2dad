// MNIST IDX files (plain or gzipped) for ckpt-train: the header's dims are
// never trusted, an accepted file holds exactly what its dims promise.
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include <unistd.h>

#include "ckpt/train/dataset.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const std::filesystem::path path =
      std::filesystem::temp_directory_path() / ("ckpt-fuzz-idx-" + std::to_string(::getpid()));
  std::ofstream(path, std::ios::binary | std::ios::trunc).write(reinterpret_cast<const char*>(data),
                                                                static_cast<std::streamsize>(size));
  auto array = ckpt::train::read_idx(path);
  if (!array.ok()) return 0;
  std::uint64_t count = 1;
  for (auto dim : array->dims) count *= dim;
  if (count != array->values.size()) std::abort();
  return 0;
}
