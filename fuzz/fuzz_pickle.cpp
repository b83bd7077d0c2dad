// Pickles, as OneFlow and torch flavors: nothing outside the allow-list is
// ever built, every cap holds, and whatever is accepted can be written back
// and read again.
#include <cstdlib>

#include "ckpt/format/pickle.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(data), size);
  for (auto flavor : {ckpt::pickle::Flavor::kOneflow, ckpt::pickle::Flavor::kTorch}) {
    ckpt::pickle::ReadOptions options;
    options.flavor = flavor;
    auto document = ckpt::pickle::read(bytes, options);
    if (!document.ok()) continue;
    for (int protocol : {2, 4}) {
      auto written = ckpt::pickle::write(*document->root(), protocol);
      if (written.ok() && !ckpt::pickle::read(*written, options).ok()) std::abort();
    }
  }
  return 0;
}
