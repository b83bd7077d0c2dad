// The library's torch reader and writer (the "torch" format of
// open_checkpoint/create_checkpoint) as a command for the interop test:
//   torch_tool dump SRC DIR [NAME]      each tensor of SRC (any format) to DIR/<n>.bin + DIR/manifest.tsv;
//                                       NAME names the tensor of a single .npy file
//   torch_tool write FILE.pt DIR        the tensors of DIR/manifest.tsv into FILE.pt, a flat state_dict
//   torch_tool sample FILE NAME OFFSET LENGTH
//                                       LENGTH bytes of tensor NAME from byte OFFSET, as hex on stdout
// manifest.tsv lines: name \t OneFlow dtype name \t comma-separated shape
#include <fstream>
#include <iostream>
#include <sstream>

#include "ckpt/format/checkpoint.hpp"

namespace fs = std::filesystem;

namespace {

int fail(const ckpt::Error& error) {
  std::cerr << error.describe() << "\n";
  return 1;
}

int dump(const fs::path& file, const fs::path& dir, const char* tensor_name) {
  ckpt::OpenOptions options;
  if (tensor_name != nullptr) options.tensor_name = tensor_name;
  auto torch = ckpt::open_checkpoint(file, options);
  if (!torch.ok()) return fail(torch.error());
  std::ofstream manifest(dir / "manifest.tsv");
  std::size_t index = 0;
  for (const auto& tensor : (*torch)->tensors()) {
    std::vector<std::byte> bytes(tensor.meta.byte_size());
    auto source = (*torch)->open(tensor.name);
    if (!source.ok()) return fail(source.error());
    if (auto status = (*source)->read_at(0, bytes); !status.ok()) return fail(status.error());
    std::ofstream(dir / (std::to_string(index++) + ".bin"), std::ios::binary)
        .write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
    std::string shape;
    for (auto d : tensor.meta.shape()) shape += (shape.empty() ? "" : ",") + std::to_string(d);
    manifest << tensor.name << '\t' << ckpt::dtype_name(tensor.meta.dtype()) << '\t' << shape << '\n';
  }
  return 0;
}

int write(const fs::path& file, const fs::path& dir) {
  auto writer = ckpt::create_checkpoint(file, "torch");
  if (!writer.ok()) return fail(writer.error());
  std::ifstream manifest(dir / "manifest.tsv");
  std::string line;
  for (std::size_t index = 0; std::getline(manifest, line); ++index) {
    std::istringstream fields(line);
    std::string name, dtype, dims;
    std::getline(fields, name, '\t');
    std::getline(fields, dtype, '\t');
    std::getline(fields, dims, '\t');
    ckpt::Shape shape;
    std::istringstream dim_stream(dims);
    for (std::string d; std::getline(dim_stream, d, ',');) shape.push_back(std::stoll(d));
    auto meta = ckpt::VariableMeta::make(*ckpt::dtype_from_name(dtype), shape);
    if (!meta.ok()) return fail(meta.error());
    auto data = ckpt::FileSource::open(dir / (std::to_string(index) + ".bin"));
    if (!data.ok()) return fail(data.error());
    if (auto status = (*writer)->add(name, *meta, *data); !status.ok()) return fail(status.error());
  }
  if (auto status = (*writer)->commit(); !status.ok()) return fail(status.error());
  return 0;
}

int sample(const fs::path& file, const std::string& name, std::uint64_t offset, std::size_t length) {
  auto reader = ckpt::open_checkpoint(file);
  if (!reader.ok()) return fail(reader.error());
  auto source = (*reader)->open(name);
  if (!source.ok()) return fail(source.error());
  std::vector<std::byte> bytes(length);
  if (auto status = (*source)->read_at(offset, bytes); !status.ok()) return fail(status.error());
  static constexpr char kHex[] = "0123456789abcdef";
  for (std::byte b : bytes) std::cout << kHex[std::to_integer<unsigned>(b) >> 4] << kHex[std::to_integer<unsigned>(b) & 15];
  std::cout << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string command = argc > 1 ? argv[1] : "";
  if (command == "sample" && argc == 6) return sample(argv[2], argv[3], std::stoull(argv[4]), std::stoull(argv[5]));
  if (argc != 4 && !(command == "dump" && argc == 5)) {
    std::cerr << "usage: torch_tool dump FILE DIR [NAME] | write FILE.pt DIR | sample FILE NAME OFFSET LENGTH\n";
    return 2;
  }
  if (command == "dump") return dump(argv[2], argv[3], argc == 5 ? argv[4] : nullptr);
  if (command == "write") return write(argv[2], argv[3]);
  std::cerr << "unknown command " << command << "\n";
  return 2;
}
