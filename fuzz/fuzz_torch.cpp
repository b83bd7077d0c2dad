// torch.save zip files through the whole reader: zip layout, data.pkl under
// the torch allow-list, storages and views; every listed tensor reads in full.
#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <vector>

#include <unistd.h>

#include "ckpt/format/torch_file.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const std::filesystem::path path =
      std::filesystem::temp_directory_path() / ("ckpt-fuzz-torch-" + std::to_string(::getpid()) + ".pt");
  std::ofstream(path, std::ios::binary | std::ios::trunc).write(reinterpret_cast<const char*>(data),
                                                                static_cast<std::streamsize>(size));
  auto file = ckpt::TorchFile::open(path);
  if (!file.ok()) return 0;
  // Views of a small file can be huge (stride 0 over a few bytes): small ones
  // are read whole, every one streamed at its start, middle and end, which
  // must stay in bounded memory (-rss_limit_mb) whatever the view's size.
  constexpr std::uint64_t kWholeReadBytes = 16u << 20;
  constexpr std::uint64_t kSampleBytes = 4096;
  for (const auto& tensor : file->tensors()) {
    std::uint64_t size = tensor.meta.byte_size();
    if (size <= kWholeReadBytes) {
      std::vector<std::byte> bytes(size);
      (void)file->read(tensor.name, bytes);
    }
    auto source = file->open_tensor(tensor.name);
    if (!source.ok()) continue;
    std::vector<std::byte> sample(std::min(size, kSampleBytes));
    for (std::uint64_t offset : {std::uint64_t{0}, (size - sample.size()) / 2, size - sample.size()}) {
      (void)(*source)->read_at(offset, sample);
    }
  }
  return 0;
}
