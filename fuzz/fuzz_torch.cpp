// torch.save zip files through the whole reader: zip layout, data.pkl under
// the torch allow-list, storages and views; every listed tensor reads in full.
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
  for (const auto& tensor : file->tensors()) {
    if (tensor.meta.byte_size() > (64u << 20)) continue;  // views of a small file can still be large (broadcast)
    std::vector<std::byte> bytes(tensor.meta.byte_size());
    (void)file->read(tensor.name, bytes);
  }
  return 0;
}
