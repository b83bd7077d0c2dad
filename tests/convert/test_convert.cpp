// The generic conversion loop: every pair of formats, and a failure at each
// I/O step, read or write, leaves the destination absent.
#include "ckpt/convert/convert.hpp"

#include <set>
#include <algorithm>

#include <doctest/doctest.h>

#include "test_support.hpp"

namespace fs = std::filesystem;
using ckpt::ErrorCode;

namespace {

// np.asfortranarray(np.arange(6, dtype='<i2').reshape(2, 3).astype('>i2')) as
// numpy saves it (v1 header, not aligned: the reader must not care), and its
// C-order little-endian elements.
const std::string kFortranBigEndianNpy = std::string("\x93NUMPY\x01\x00\x39\x00", 10) +
                                         "{'descr': '>i2', 'fortran_order': True, 'shape': (2, 3)}\n" +
                                         std::string("\x00\x00\x00\x03\x00\x01\x00\x04\x00\x02\x00\x05", 12);
const std::string kFortranBigEndianElements = std::string("\x00\x00\x01\x00\x02\x00\x03\x00\x04\x00\x05\x00", 12);

// A source directory of .npy files: two plain arrays and one that must be
// swapped and transposed on its way.
void make_source(const fs::path& directory) {
  auto writer = ckpt::create_checkpoint(directory, "npy");
  REQUIRE(writer.ok());
  for (int i = 0; i < 2; ++i) {
    auto bytes = ckpt::testing::random_bytes(4096 * (i + 1), 40 + i);
    auto meta = ckpt::VariableMeta::make(ckpt::DType::kFloat, {1024, i + 1});
    REQUIRE((*writer)->add("layer" + std::to_string(i), *meta, ckpt::MemorySource(bytes)).ok());
  }
  REQUIRE((*writer)->commit().ok());
  ckpt::testing::write_file(directory / "swapped.npy", kFortranBigEndianNpy);
}

// make_source under `dir`, opened.
std::unique_ptr<ckpt::CheckpointReader> open_source(const ckpt::testing::TempDir& dir) {
  make_source(dir / "source");
  auto source = ckpt::open_checkpoint(dir / "source");
  REQUIRE(source.ok());
  return std::move(source).value();
}

std::string all_bytes(const ckpt::CheckpointReader& reader, std::string_view name) {
  auto source = reader.open(name);
  REQUIRE_MESSAGE(source.ok(), source.error().describe());
  ckpt::MemorySink sink;
  REQUIRE(sink.write_from(**source, 0, (*source)->size()).ok());
  return {reinterpret_cast<const char*>(sink.bytes().data()), sink.bytes().size()};
}

// `path` holds exactly the tensors of `expected`, byte for byte.
void check_same(const ckpt::CheckpointReader& expected, const fs::path& path) {
  auto actual = ckpt::open_checkpoint(path);
  REQUIRE_MESSAGE(actual.ok(), actual.error().describe());
  REQUIRE((*actual)->tensors().size() == expected.tensors().size());
  for (const auto& tensor : expected.tensors()) {
    const ckpt::TensorInfo* found = (*actual)->find(tensor.name);
    REQUIRE(found != nullptr);
    CHECK(found->meta == tensor.meta);
    CHECK(all_bytes(**actual, tensor.name) == all_bytes(expected, tensor.name));
  }
}

// Fails the n-th write step (0-based) and counts them.
struct FailAt {
  int target;
  int* seen;
  bool operator()(ckpt::IoStep, const fs::path&) const { return (*seen)++ == target; }
};

// A reader whose n-th open or read fails (counting both); -1 never fails.
class FaultyReader final : public ckpt::CheckpointReader {
 public:
  FaultyReader(const ckpt::CheckpointReader& inner, int fail_at) : inner_(inner), fail_at_(fail_at) {}
  std::string_view format_name() const override { return inner_.format_name(); }
  const fs::path& path() const override { return inner_.path(); }
  const std::vector<ckpt::TensorInfo>& tensors() const override { return inner_.tensors(); }
  ckpt::Result<std::unique_ptr<ckpt::ByteSource>> open(std::string_view name) const override {
    CKPT_TRY(step());
    CKPT_ASSIGN_OR_RETURN(std::shared_ptr<const ckpt::ByteSource> data, inner_.open(name));
    return std::unique_ptr<ckpt::ByteSource>(std::make_unique<ckpt::CallbackSource>(
        data->size(), [this, data](std::uint64_t offset, std::span<std::byte> out) -> ckpt::Status {
          CKPT_TRY(step());
          return data->read_at(offset, out);
        }));
  }
  int steps() const { return steps_; }

 private:
  ckpt::Status step() const {
    if (steps_++ == fail_at_) return ckpt::Error(ErrorCode::kInjectedFault, "injected read failure");
    return {};
  }
  const ckpt::CheckpointReader& inner_;
  int fail_at_;
  mutable int steps_ = 0;
};

// Only `expected` in the directory: no destination, no staging leftover.
void check_only(const fs::path& directory, const std::vector<std::string>& expected) {
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(directory)) names.push_back(entry.path().filename().string());
  std::sort(names.begin(), names.end());
  CHECK(names == expected);
}

}  // namespace

// Every format this build writes.
const std::vector<std::string_view> kFormats = {"oneflow", "oneflow-pickle", "npy", "npz", "safetensors", "torch",
                                                 "safetensors-sharded"};

TEST_CASE("every format converts to every format, bytes unchanged") {
  ckpt::testing::TempDir dir;
  auto source = open_source(dir);
  CHECK(all_bytes(*source, "swapped") == kFortranBigEndianElements);
  for (std::string_view middle : kFormats) {
    for (std::string_view last : kFormats) {
      fs::path first_path = dir / middle;
      fs::path second_path = dir / (std::string(middle) + "_" + std::string(last));
      if (!fs::exists(first_path)) {
        auto writer = ckpt::create_checkpoint(first_path, middle);
        REQUIRE(writer.ok());
        REQUIRE(ckpt::convert::convert(*source, **writer).ok());
      }
      auto first = ckpt::open_checkpoint(first_path);
      REQUIRE(first.ok());
      ckpt::WriteOptions options;
      options.compress = last == "npz";
      auto writer = ckpt::create_checkpoint(second_path, last, options);
      REQUIRE(writer.ok());
      std::vector<std::size_t> progress;
      ckpt::convert::ConvertOptions convert_options;
      convert_options.progress = [&](const ckpt::convert::Progress& p) { progress.push_back(p.variables_done); };
      auto summary = ckpt::convert::convert(**first, **writer, convert_options);
      REQUIRE_MESSAGE(summary.ok(), summary.error().describe());
      CHECK(summary->variables == 3);
      CHECK(summary->bytes == 4096 + 8192 + 12);
      CHECK(progress == std::vector<std::size_t>{1, 2, 3});
      CHECK(ckpt::detect_format(second_path).value() == last);
      check_same(*source, second_path);
    }
  }
}

TEST_CASE("a failure at each write step of a conversion leaves no destination") {
  ckpt::testing::TempDir dir;
  auto source = open_source(dir);
  for (std::string_view format : kFormats) {
    int steps = 0;
    {
      ckpt::WriteOptions counting;
      counting.fault_hook = FailAt{-1, &steps};
      auto writer = ckpt::create_checkpoint(dir / "counted", format, counting);
      REQUIRE(writer.ok());
      REQUIRE(ckpt::convert::convert(*source, **writer).ok());
      fs::remove_all(dir / "counted");
    }
    REQUIRE(steps > 3);
    MESSAGE("to ", format, ": failing each of ", steps, " write steps");
    for (int target = 0; target < steps; ++target) {
      int seen = 0;
      ckpt::WriteOptions options;
      options.fault_hook = FailAt{target, &seen};
      {
        auto writer = ckpt::create_checkpoint(dir / "out", format, options);
        if (writer.ok()) {
          auto converted = ckpt::convert::convert(*source, **writer);
          REQUIRE_FALSE_MESSAGE(converted.ok(), format, " step ", target);
          CHECK(converted.error().code() == ErrorCode::kInjectedFault);
        } else {
          CHECK(writer.error().code() == ErrorCode::kInjectedFault);
        }
      }
      // The rename is the commit point: only the directory fsync after it
      // may fail with the destination in place, and then it is complete.
      if (fs::exists(dir / "out")) {
        CHECK_MESSAGE(target == steps - 1, format, " step ", target);
        check_same(*source, dir / "out");
        fs::remove_all(dir / "out");
      }
      check_only(dir.path(), {"source"});
    }
  }
}

TEST_CASE("a failure at each read of a conversion leaves no destination") {
  ckpt::testing::TempDir dir;
  auto source = open_source(dir);
  for (std::string_view format : kFormats) {
    FaultyReader counting(*source, -1);
    {
      auto writer = ckpt::create_checkpoint(dir / "counted", format);
      REQUIRE(writer.ok());
      REQUIRE(ckpt::convert::convert(counting, **writer).ok());
      fs::remove_all(dir / "counted");
    }
    REQUIRE(counting.steps() >= 6);  // an open and at least one read per tensor
    MESSAGE("to ", format, ": failing each of ", counting.steps(), " reads");
    for (int target = 0; target < counting.steps(); ++target) {
      FaultyReader faulty(*source, target);
      {
        auto writer = ckpt::create_checkpoint(dir / "out", format);
        REQUIRE(writer.ok());
        auto converted = ckpt::convert::convert(faulty, **writer);
        REQUIRE_FALSE(converted.ok());
        CHECK(converted.error().code() == ErrorCode::kInjectedFault);
      }
      CHECK_MESSAGE(!fs::exists(dir / "out"), format, " read ", target);
      check_only(dir.path(), {"source"});
    }
  }
}

TEST_CASE("the destination format: --to, else the registry's extension, else what DST holds") {
  ckpt::testing::TempDir dir;
  make_source(dir / "npy_dir");
  auto chosen = [](const fs::path& path, std::optional<std::string> to = std::nullopt) {
    auto format = ckpt::format_for_destination(path, to);
    return format.ok() ? *format : "error " + ckpt::code_id(format.error().code());
  };
  CHECK(chosen(dir / "x.npz", "npy") == "npy");
  CHECK(chosen(dir / "x.npz") == "npz");
  CHECK(chosen(dir / "x.safetensors") == "safetensors");
  CHECK(chosen(dir / "x.pth") == "torch");
  CHECK(chosen(dir / "x.bin") == "torch");
  CHECK(chosen(dir / "npy_dir") == "npy");
  CHECK(chosen(dir / "new") == "oneflow");
  fs::create_directory(dir / "empty");
  CHECK(chosen(dir / "empty") == "oneflow");
  // An extension no format claims is refused, unless the format is named.
  CHECK(chosen(dir / "out.gguf") == "error E104");
  CHECK(chosen(dir / "out.onnx") == "error E104");
  CHECK(chosen(dir / "out.gguf", "oneflow") == "oneflow");
  CHECK(chosen(dir / "x.npz", "gguf") == "error E104");
  // "x.safetensors/" is the file x.safetensors; an existing directory of
  // that name is no place for a file format.
  CHECK(chosen((dir / "x.safetensors").string() + "/") == "safetensors");
  fs::create_directory(dir / "d.safetensors");
  CHECK(chosen(dir / "d.safetensors") == "error E104");
  CHECK(chosen((dir / "d.safetensors").string() + "/") == "error E104");
}

TEST_CASE("the registry describes every format once: name, summary, extensions, kind") {
  auto formats = ckpt::registered_formats();
  REQUIRE(formats.size() == ckpt::checkpoint_formats().size());
  for (const auto& format : formats) {
    CHECK_MESSAGE(!format.summary.empty(), format.name);
    // Directories are named freely; a file format without an extension of
    // its own (OneFlow 1.0's single file) is reached by --to only.
    if (format.kind == ckpt::FormatKind::kDirectory) CHECK_MESSAGE(format.extensions.empty(), format.name);
  }
  std::set<std::string_view> claimed;
  for (const auto& format : formats) {
    for (std::string_view extension : format.extensions) CHECK_MESSAGE(claimed.insert(extension).second, extension);
  }
  CHECK(ckpt::dtype_name_in_format("safetensors", ckpt::DType::kBFloat16) == "BF16");
  CHECK(ckpt::dtype_name_in_format("npz", ckpt::DType::kFloat) == "<f4");
  CHECK(ckpt::dtype_name_in_format("torch", ckpt::DType::kFloat16) == "HalfStorage");
  CHECK(ckpt::dtype_name_in_format("oneflow", ckpt::DType::kFloat).empty());
}
