// What a path that no format recognised is, when its first bytes say so:
// the message a user needs is "fetch it with git lfs", not a list of formats.
#include <algorithm>
#include <array>
#include <cctype>

#include <fmt/format.h>

#include "ckpt/format/zip.hpp"
#include "registry/formats.hpp"

namespace ckpt::detail {
namespace {

namespace fs = std::filesystem;

constexpr std::string_view kLfsPointerStart = "version https://git-lfs.github.com/spec/";
constexpr std::size_t kHeadBytes = 256;

bool starts_with_html(std::string_view head) {
  if (head.starts_with("\xEF\xBB\xBF")) head.remove_prefix(3);  // a UTF-8 byte-order mark
  while (!head.empty() && std::isspace(static_cast<unsigned char>(head.front())) != 0) head.remove_prefix(1);
  std::string lower(head.substr(0, 14));
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
  return lower.starts_with("<!doctype html") || lower.starts_with("<html") || lower.starts_with("<head") ||
         lower.starts_with("<body");
}

Error recognised(std::string message, const fs::path& path) {
  return Error(ErrorCode::kRecognisedNotCheckpoint, std::move(message)).in_file(path.string());
}

}  // namespace

Error diagnose_unrecognised(const fs::path& path, std::string_view known_formats) {
  Error generic = Error(ErrorCode::kNotACheckpoint, fmt::format("not a checkpoint of any known format ({})", known_formats))
                      .in_file(path.string());
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) return generic;
  auto file = FileSource::open(path);
  if (!file.ok()) return std::move(file).error();
  std::array<char, kHeadBytes> buffer{};
  const auto length = static_cast<std::size_t>(std::min<std::uint64_t>(file->size(), buffer.size()));
  if (!file->read_at(0, std::as_writable_bytes(std::span(buffer.data(), length))).ok()) return generic;
  const std::string_view head(buffer.data(), length);

  if (head.starts_with(kLfsPointerStart)) {
    return recognised(fmt::format("a Git LFS pointer ({} bytes of text), not the file it stands for: fetch the file "
                                  "with git lfs (git lfs pull) and use that",
                                  file->size()),
                      path);
  }
  if (starts_with_html(head)) {
    return recognised("an HTML page, not a checkpoint: the download saved a web page (an error or login page?) "
                      "instead of the file",
                      path);
  }
  // The extension says safetensors: its own reader says what is wrong.
  if (path.extension() == ".safetensors") {
    auto opened = safetensors_format().open(path, {});
    return opened.ok() ? generic : std::move(opened).error();
  }
  if (head.starts_with("PK\x03\x04") || head.starts_with("PK\x05\x06")) {
    auto zip = ZipReader::open(*file);
    if (!zip.ok()) {
      return recognised(fmt::format("a zip archive that cannot be read, truncated or damaged ({}); a torch.save "
                                    "file or an .npz is a zip: download or copy it again",
                                    zip.error().message()),
                        path);
    }
    return recognised("a zip archive with neither .npy members (npz) nor a <root>/data.pkl record (torch)", path);
  }
  if (head.size() >= 2 && static_cast<unsigned char>(head[0]) == 0x80 && head[1] >= 2 && head[1] <= 5) {
    return recognised(fmt::format("a bare Python pickle (protocol {}): neither a torch.save file (zip or legacy) "
                                  "nor a OneFlow pickled_data directory",
                                  static_cast<int>(head[1])),
                      path);
  }
  return generic;
}

}  // namespace ckpt::detail
