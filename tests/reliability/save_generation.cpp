// Test driver: saves generation G of a known snapshot (4 variables of
// MIB/4 MiB each plus a "generation" scalar) to DEST, so a test can kill it
// anywhere and then tell exactly which generation, if any, is on disk.
// Byte i of variable v is (G * 31 + v * 7 + i) % 251.
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "ckpt/format/writer.hpp"

namespace {

ckpt::Status save(const std::filesystem::path& destination, std::int64_t generation, std::uint64_t mib,
                  bool overwrite) {
  CKPT_ASSIGN_OR_RETURN(auto writer, ckpt::SnapshotWriter::create(destination, {.overwrite = overwrite}));
  const std::uint64_t bytes = mib * (1u << 20) / 4;
  for (int v = 0; v < 4; ++v) {
    CKPT_ASSIGN_OR_RETURN(auto meta, ckpt::VariableMeta::make(ckpt::DType::kUInt8, {static_cast<std::int64_t>(bytes)}));
    ckpt::CallbackSource pattern(bytes, [&](std::uint64_t offset, std::span<std::byte> out) -> ckpt::Status {
      for (std::size_t i = 0; i < out.size(); ++i) {
        out[i] = static_cast<std::byte>((static_cast<std::uint64_t>(generation) * 31 + v * 7 + offset + i) % 251);
      }
      return {};
    });
    CKPT_TRY(writer.add(fmt::format("var{}", v), meta, pattern));
  }
  CKPT_ASSIGN_OR_RETURN(auto scalar, ckpt::VariableMeta::make(ckpt::DType::kInt64, {}));
  CKPT_TRY(writer.add("generation", scalar, std::as_bytes(std::span(&generation, 1))));
  return writer.commit();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) {
    fmt::print(stderr, "usage: save_generation DEST GENERATION MIB [--overwrite]\n");
    return 2;
  }
  bool overwrite = argc > 4 && std::string(argv[4]) == "--overwrite";
  auto status = save(argv[1], std::atoll(argv[2]), std::strtoull(argv[3], nullptr, 10), overwrite);
  if (!status.ok()) {
    fmt::print(stderr, "{}\n", status.error().describe());
    return status.error().code() == ckpt::ErrorCode::kDestinationExists ? 3 : 1;
  }
  return 0;
}
