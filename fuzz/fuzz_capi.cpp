// The C API boundary: any file through ckpt_open / ckpt_validate, every
// listed tensor read and mapped. Each call returns a status; nothing may
// throw across the boundary, leak a handle or read past a buffer.
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <vector>

#include <unistd.h>

#include "ckpt.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const std::filesystem::path path =
      std::filesystem::temp_directory_path() / ("ckpt-fuzz-capi-" + std::to_string(::getpid()));
  std::ofstream(path, std::ios::binary | std::ios::trunc).write(reinterpret_cast<const char*>(data),
                                                                static_cast<std::streamsize>(size));
  ckpt_report* report = nullptr;
  if (ckpt_validate(path.c_str(), &report) == CKPT_OK) {
    for (std::size_t i = 0; i < ckpt_report_issue_count(report); ++i) {
      ckpt_issue issue{};
      if (ckpt_report_issue(report, i, &issue) != CKPT_OK) std::abort();
    }
    ckpt_report_free(report);
  }
  ckpt_reader* reader = nullptr;
  if (ckpt_open(path.c_str(), nullptr, &reader) != CKPT_OK) return 0;
  for (std::size_t i = 0; i < ckpt_tensor_count(reader); ++i) {
    ckpt_tensor_info info{};
    if (ckpt_tensor_at(reader, i, &info) != CKPT_OK) std::abort();
    if (info.nbytes <= (16u << 20)) {
      std::vector<unsigned char> buffer(static_cast<std::size_t>(info.nbytes));
      (void)ckpt_read(reader, info.name, buffer.data(), buffer.size());
    }
    // A wrong buffer size is refused, never written past.
    unsigned char small[1];
    if (info.nbytes != 1 && ckpt_read(reader, info.name, small, sizeof small) == CKPT_OK) std::abort();
    ckpt_view* view = nullptr;
    if (info.nbytes <= (16u << 20) && ckpt_map(reader, info.name, &view) == CKPT_OK) {
      if (ckpt_view_size(view) != info.nbytes) std::abort();
      ckpt_view_free(view);
    }
  }
  ckpt_close(reader);
  return 0;
}
