// Test driver: saves generation G of a known checkpoint (4 variables of
// MIB/4 MiB each plus a "generation" scalar) to DEST, so a test can kill it
// anywhere and then tell exactly which generation, if any, is on disk; or
// reads DEST through the library's reader, slowly, as a reader racing the
// saves would.
//   save_generation DEST GENERATION MIB [--overwrite] [--format F]   (default oneflow)
//   save_generation --read DEST      prints the generation; exit 1 if any byte is not of it
// Byte i of variable v is (G * 31 + v * 7 + i) % 251.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "ckpt/format/checkpoint.hpp"

namespace {

constexpr int kVariables = 4;

std::byte pattern_byte(std::int64_t generation, int variable, std::uint64_t index) {
  return static_cast<std::byte>((static_cast<std::uint64_t>(generation) * 31 + variable * 7 + index) % 251);
}

ckpt::Status save(const std::filesystem::path& destination, std::int64_t generation, std::uint64_t mib,
                  bool overwrite, const std::string& format) {
  CKPT_ASSIGN_OR_RETURN(auto writer, ckpt::create_checkpoint(destination, format, {.overwrite = overwrite}));
  const std::uint64_t bytes = mib * (1u << 20) / kVariables;
  for (int v = 0; v < kVariables; ++v) {
    CKPT_ASSIGN_OR_RETURN(auto meta, ckpt::VariableMeta::make(ckpt::DType::kUInt8, {static_cast<std::int64_t>(bytes)}));
    ckpt::CallbackSource pattern(bytes, [&](std::uint64_t offset, std::span<std::byte> out) -> ckpt::Status {
      for (std::size_t i = 0; i < out.size(); ++i) out[i] = pattern_byte(generation, v, offset + i);
      return {};
    });
    CKPT_TRY(writer->add(fmt::format("var{}", v), meta, pattern));
  }
  CKPT_ASSIGN_OR_RETURN(auto scalar, ckpt::VariableMeta::make(ckpt::DType::kInt64, {}));
  CKPT_TRY(writer->add("generation", scalar, ckpt::MemorySource(std::as_bytes(std::span(&generation, 1)))));
  return writer->commit();
}

// Reads every variable in small pieces with pauses, so that saves replace
// the checkpoint while it is being read; every byte must be of one generation.
ckpt::Result<std::int64_t> read_generation(const std::filesystem::path& path) {
  CKPT_ASSIGN_OR_RETURN(auto reader, ckpt::open_checkpoint(path));
  std::int64_t generation = 0;
  CKPT_ASSIGN_OR_RETURN(auto scalar, reader->open("generation"));
  CKPT_TRY(scalar->read_at(0, std::as_writable_bytes(std::span(&generation, 1))));
  std::vector<std::byte> piece(64 * 1024);
  for (int v = 0; v < kVariables; ++v) {
    const std::string name = fmt::format("var{}", v);
    CKPT_ASSIGN_OR_RETURN(auto source, reader->open(name));
    for (std::uint64_t offset = 0; offset < source->size(); offset += piece.size()) {
      std::span<std::byte> chunk(piece.data(), std::min<std::uint64_t>(piece.size(), source->size() - offset));
      CKPT_TRY(source->read_at(offset, chunk));
      for (std::size_t i = 0; i < chunk.size(); ++i) {
        if (chunk[i] != pattern_byte(generation, v, offset + i)) {
          return ckpt::Error(ckpt::ErrorCode::kDataSizeMismatch,
                             fmt::format("byte {} is not of generation {}: a mix", offset + i, generation))
              .in_variable(name);
        }
      }
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
  }
  return generation;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.size() == 2 && args[0] == "--read") {
    auto generation = read_generation(args[1]);
    if (!generation.ok()) {
      fmt::print(stderr, "{}\n", generation.error().describe());
      return 1;
    }
    fmt::print("{}\n", *generation);
    return 0;
  }
  if (args.size() < 3) {
    fmt::print(stderr, "usage: save_generation DEST GENERATION MIB [--overwrite] [--format F] | --read DEST\n");
    return 2;
  }
  bool overwrite = false;
  std::string format = "oneflow";
  for (std::size_t i = 3; i < args.size(); ++i) {
    if (args[i] == "--overwrite") overwrite = true;
    if (args[i] == "--format" && i + 1 < args.size()) format = args[++i];
  }
  auto status = save(args[0], std::atoll(args[1].c_str()), std::strtoull(args[2].c_str(), nullptr, 10), overwrite,
                     format);
  if (!status.ok()) {
    fmt::print(stderr, "{}\n", status.error().describe());
    return status.error().code() == ckpt::ErrorCode::kDestinationExists ? 3 : 1;
  }
  return 0;
}
