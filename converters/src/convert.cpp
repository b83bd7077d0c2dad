#include "ckpt/convert/convert.hpp"

#include <algorithm>
#include <array>
#include <fstream>
#include <memory>
#include <vector>

#include <fmt/format.h>

#include "ckpt/format/checkpoint.hpp"
#include "ckpt/format/npz.hpp"
#include "ckpt/format/snapshot.hpp"
#include "ckpt/format/writer.hpp"

namespace ckpt::convert {
namespace {

namespace fs = std::filesystem;

using WriteData = std::function<Status(ByteSink&)>;

// Shapes files are small: a few hundred bytes per variable.
constexpr std::uintmax_t kMaxShapesFileBytes = 64u << 20;

// Where variables come from. Data is written on demand, one variable at a
// time, so at most one input file is open.
class Source {
 public:
  virtual ~Source() = default;
  virtual const std::vector<std::pair<std::string, VariableMeta>>& variables() const = 0;
  // Writes variable `index`'s elements, C order little-endian, to `sink`.
  virtual Status write_data(std::size_t index, ByteSink& sink) const = 0;
};

// A OneFlow snapshot through libformat's generic reader (L0 shapes included).
class SnapshotSource final : public Source {
 public:
  static Result<std::unique_ptr<Source>> open(const fs::path& root, const ShapeTable& shapes) {
    OpenOptions options;
    options.format = "oneflow";
    options.shapes = &shapes;
    CKPT_ASSIGN_OR_RETURN(std::unique_ptr<CheckpointReader> reader, open_checkpoint(root, options));
    std::vector<std::pair<std::string, VariableMeta>> variables;
    for (const TensorInfo& tensor : reader->tensors()) variables.emplace_back(tensor.name, tensor.meta);
    return std::unique_ptr<Source>(new SnapshotSource(std::move(reader), std::move(variables)));
  }
  const std::vector<std::pair<std::string, VariableMeta>>& variables() const override { return variables_; }
  Status write_data(std::size_t index, ByteSink& sink) const override {
    CKPT_ASSIGN_OR_RETURN(std::unique_ptr<ByteSource> data, reader_->open(variables_[index].first));
    return sink.write_from(*data, 0, data->size());  // a plain file: copied by the kernel
  }

 private:
  SnapshotSource(std::unique_ptr<CheckpointReader> reader, std::vector<std::pair<std::string, VariableMeta>> variables)
      : reader_(std::move(reader)), variables_(std::move(variables)) {}
  std::unique_ptr<CheckpointReader> reader_;
  std::vector<std::pair<std::string, VariableMeta>> variables_;
};

class NpyDirectorySource final : public Source {
 public:
  static Result<std::unique_ptr<Source>> open(const fs::path& directory, const NpyReadOptions& options) {
    std::vector<fs::path> files;
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(directory, ec)) {
      const fs::path& path = entry.path();
      if (path.extension() == kNpyExtension && !entry.is_symlink(ec) && entry.is_regular_file(ec)) {
        files.push_back(path);
      }
    }
    if (ec) return Error(ErrorCode::kIo, ec.message()).in_file(directory.string());
    if (files.empty()) return Error(ErrorCode::kNotACheckpoint, "no .npy file").in_file(directory.string());
    std::sort(files.begin(), files.end());
    std::vector<std::pair<std::string, VariableMeta>> variables;
    for (const fs::path& file : files) {
      std::string name = file.stem().string();
      auto header = read_header(file, name, options);
      if (!header.ok()) return std::move(header).error();
      variables.emplace_back(std::move(name), header->meta);
    }
    return std::unique_ptr<Source>(new NpyDirectorySource(directory, std::move(variables), options));
  }
  const std::vector<std::pair<std::string, VariableMeta>>& variables() const override { return variables_; }
  Status write_data(std::size_t index, ByteSink& sink) const override {
    const std::string& name = variables_[index].first;
    fs::path file = directory_ / (name + std::string(kNpyExtension));
    CKPT_ASSIGN_OR_RETURN(FileSource source, FileSource::open(file));
    CKPT_ASSIGN_OR_RETURN(NpyHeader header, read_header(file, name, options_));
    if (!(header.meta == variables_[index].second)) {
      return std::move(Error(ErrorCode::kNpyHeader, "changed while converting").in_file(file.string()).in_variable(name));
    }
    return copy_npy_data(source, header, sink, options_);
  }

 private:
  NpyDirectorySource(fs::path directory, std::vector<std::pair<std::string, VariableMeta>> variables,
                     NpyReadOptions options)
      : directory_(std::move(directory)), variables_(std::move(variables)), options_(options) {}

  static Result<NpyHeader> read_header(const fs::path& file, std::string_view name, const NpyReadOptions& options) {
    auto header = [&]() -> Result<NpyHeader> {
      CKPT_TRY(check_variable_name(name));
      CKPT_ASSIGN_OR_RETURN(FileSource source, FileSource::open(file));
      return read_npy_header(source, options);
    }();
    if (!header.ok()) return std::move(std::move(header).error().in_file(file.string()).in_variable(name));
    return header;
  }

  fs::path directory_;
  std::vector<std::pair<std::string, VariableMeta>> variables_;
  NpyReadOptions options_;
};

class NpzSource final : public Source {
 public:
  static Result<std::unique_ptr<Source>> open(const fs::path& path, const NpyReadOptions& options) {
    CKPT_ASSIGN_OR_RETURN(NpzReader reader, NpzReader::open(path, options));
    std::vector<std::pair<std::string, VariableMeta>> variables;
    for (const std::string& name : reader.names()) {
      CKPT_ASSIGN_OR_RETURN(NpzArray array, reader.open_array(name));
      variables.emplace_back(name, array.header.meta);
    }
    return std::unique_ptr<Source>(new NpzSource(std::move(reader), std::move(variables)));
  }
  const std::vector<std::pair<std::string, VariableMeta>>& variables() const override { return variables_; }
  Status write_data(std::size_t index, ByteSink& sink) const override {
    const std::string& name = variables_[index].first;
    CKPT_ASSIGN_OR_RETURN(NpzArray array, reader_.open_array(name));
    Status copied = copy_npy_data(*array.member, array.header, sink, reader_.options());
    if (!copied.ok()) return std::move(std::move(copied).error().in_variable(name));
    return {};
  }

 private:
  NpzSource(NpzReader reader, std::vector<std::pair<std::string, VariableMeta>> variables)
      : reader_(std::move(reader)), variables_(std::move(variables)) {}
  NpzReader reader_;
  std::vector<std::pair<std::string, VariableMeta>> variables_;
};

// Where variables go; nothing is visible at the destination before commit().
class Destination {
 public:
  virtual ~Destination() = default;
  virtual Status add(std::string_view name, const VariableMeta& meta, const WriteData& write_data) = 0;
  virtual Status commit() = 0;
};

class SnapshotDestination final : public Destination {
 public:
  explicit SnapshotDestination(SnapshotWriter writer) : writer_(std::move(writer)) {}
  Status add(std::string_view name, const VariableMeta& meta, const WriteData& write_data) override {
    return writer_.add(name, meta, write_data);
  }
  Status commit() override { return writer_.commit(); }

 private:
  SnapshotWriter writer_;
};

class NpyDirectoryDestination final : public Destination {
 public:
  explicit NpyDirectoryDestination(AtomicDirectory directory) : directory_(std::move(directory)) {}
  Status add(std::string_view name, const VariableMeta& meta, const WriteData& write_data) override {
    auto status = [&]() -> Status {
      CKPT_TRY(check_variable_name(name));
      CKPT_ASSIGN_OR_RETURN(std::string header, make_npy_header(meta));
      CKPT_ASSIGN_OR_RETURN(FileSink file, directory_.create_file(fs::path(std::string(name) + std::string(kNpyExtension))));
      CKPT_TRY(file.write(as_bytes(header)));
      CountingSink counted(file);
      CKPT_TRY(write_data(counted));
      CKPT_TRY(counted.check(meta));
      return file.finish();
    }();
    if (!status.ok()) return std::move(std::move(status).error().in_variable(name));
    return {};
  }
  Status commit() override { return directory_.commit(); }

 private:
  AtomicDirectory directory_;
};

class NpzDestination final : public Destination {
 public:
  explicit NpzDestination(NpzWriter writer) : writer_(std::move(writer)) {}
  Status add(std::string_view name, const VariableMeta& meta, const WriteData& write_data) override {
    return writer_.add(name, meta, write_data);
  }
  Status commit() override { return writer_.commit(); }

 private:
  NpzWriter writer_;
};

Result<std::unique_ptr<Source>> open_source(const fs::path& path, Format format, const ConvertOptions& options) {
  switch (format) {
    case Format::kOneflow: return SnapshotSource::open(path, options.shapes);
    case Format::kNpy: return NpyDirectorySource::open(path, options.npy);
    case Format::kNpz: return NpzSource::open(path, options.npy);
  }
  return Error(ErrorCode::kInvalidArgument, "unknown source format");
}

Result<std::unique_ptr<Destination>> create_destination(const fs::path& path, Format format,
                                                        const ConvertOptions& options) {
  switch (format) {
    case Format::kOneflow: {
      CKPT_ASSIGN_OR_RETURN(SnapshotWriter writer, SnapshotWriter::create(path, options.write));
      return std::unique_ptr<Destination>(std::make_unique<SnapshotDestination>(std::move(writer)));
    }
    case Format::kNpy: {
      CKPT_ASSIGN_OR_RETURN(AtomicDirectory directory, AtomicDirectory::create(path, options.write));
      return std::unique_ptr<Destination>(std::make_unique<NpyDirectoryDestination>(std::move(directory)));
    }
    case Format::kNpz: {
      CKPT_ASSIGN_OR_RETURN(NpzWriter writer, NpzWriter::create(path, options.write, options.npz_method));
      return std::unique_ptr<Destination>(std::make_unique<NpzDestination>(std::move(writer)));
    }
  }
  return Error(ErrorCode::kInvalidArgument, "unknown destination format");
}

bool has_npy_file(const fs::path& directory) {
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(directory, ec)) {
    if (entry.path().extension() == kNpyExtension) return true;
  }
  return false;
}

}  // namespace

std::string_view format_name(Format format) {
  switch (format) {
    case Format::kOneflow: return "oneflow";
    case Format::kNpy: return "npy";
    case Format::kNpz: return "npz";
  }
  return "unknown";
}

std::optional<Format> format_from_name(std::string_view name) {
  for (Format format : {Format::kOneflow, Format::kNpy, Format::kNpz}) {
    if (format_name(format) == name) return format;
  }
  return std::nullopt;
}

Result<Format> detect_source_format(const fs::path& path) {
  std::error_code ec;
  auto status = fs::status(path, ec);
  if (!fs::exists(status)) return Error(ErrorCode::kNotFound, "does not exist").in_file(path.string());
  if (fs::is_regular_file(status)) {
    CKPT_ASSIGN_OR_RETURN(FileSource file, FileSource::open(path));
    std::array<char, 4> magic{};
    if (file.size() >= magic.size()) CKPT_TRY(file.read_at(0, std::as_writable_bytes(std::span(magic))));
    std::string_view head(magic.data(), magic.size());
    if (head == std::string_view("PK\x03\x04", 4) || head == std::string_view("PK\x05\x06", 4)) return Format::kNpz;
    return Error(ErrorCode::kNotACheckpoint, "a file that is not a zip archive (.npz)").in_file(path.string());
  }
  if (!fs::is_directory(status)) return Error(ErrorCode::kNotADirectory, "neither a file nor a directory").in_file(path.string());
  if (fs::exists(path / kDoneFile, ec)) return Format::kOneflow;
  if (has_npy_file(path)) return Format::kNpy;
  for (const auto& entry : fs::directory_iterator(path, ec)) {
    if (entry.is_directory(ec) && fs::exists(entry.path() / kDataFile, ec)) return Format::kOneflow;
  }
  return Error(ErrorCode::kNotACheckpoint, "neither a OneFlow snapshot nor a directory of .npy files")
      .in_file(path.string());
}

Format choose_destination_format(const fs::path& path, std::optional<Format> requested) {
  if (requested) return *requested;
  if (path.extension() == kNpzExtension) return Format::kNpz;
  std::error_code ec;
  if (fs::is_directory(path, ec) && !fs::exists(path / kDoneFile, ec) && has_npy_file(path)) return Format::kNpy;
  return Format::kOneflow;
}

Result<ShapeTable> load_shapes(const fs::path& json_file) {
  std::error_code ec;
  auto size = fs::file_size(json_file, ec);
  if (ec) return Error(ErrorCode::kNotFound, ec.message()).in_file(json_file.string());
  if (size > kMaxShapesFileBytes) {
    return Error(ErrorCode::kInvalidArgument, fmt::format("{} bytes; the cap is {}", size, kMaxShapesFileBytes))
        .in_file(json_file.string());
  }
  std::ifstream in(json_file, std::ios::binary);
  std::string text(static_cast<std::size_t>(size), '\0');
  if (!in.read(text.data(), static_cast<std::streamsize>(text.size()))) {
    return Error(ErrorCode::kIo, "cannot read").in_file(json_file.string());
  }
  return parse_shape_table(text, json_file.string());
}

Result<ConvertSummary> convert(const fs::path& source_path, Format from, const fs::path& destination_path, Format to,
                               const ConvertOptions& options) {
  CKPT_ASSIGN_OR_RETURN(std::unique_ptr<Source> source, open_source(source_path, from, options));
  CKPT_ASSIGN_OR_RETURN(std::unique_ptr<Destination> destination, create_destination(destination_path, to, options));
  Progress progress;
  progress.variables_total = source->variables().size();
  for (const auto& [name, meta] : source->variables()) progress.bytes_total += meta.byte_size();
  for (std::size_t i = 0; i < source->variables().size(); ++i) {
    const auto& [name, meta] = source->variables()[i];
    CKPT_TRY(destination->add(name, meta, [&](ByteSink& sink) { return source->write_data(i, sink); }));
    progress.variables_done = i + 1;
    progress.bytes_done += meta.byte_size();
    progress.variable = name;
    if (options.progress) options.progress(progress);
  }
  CKPT_TRY(destination->commit());
  return ConvertSummary{progress.variables_total, progress.bytes_total};
}

}  // namespace ckpt::convert
