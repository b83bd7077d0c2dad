#include "ckpt/format/error.hpp"

#include <fmt/format.h>

namespace ckpt {

std::string code_id(ErrorCode code) { return fmt::format("E{}", static_cast<unsigned>(code)); }

std::string_view code_name(ErrorCode code) {
  switch (code) {
    case ErrorCode::kIo: return "io";
    case ErrorCode::kNotFound: return "not_found";
    case ErrorCode::kDestinationExists: return "destination_exists";
    case ErrorCode::kInvalidArgument: return "invalid_argument";
    case ErrorCode::kInjectedFault: return "injected_fault";
    case ErrorCode::kBusy: return "busy";
    case ErrorCode::kObjectDataDropped: return "object_data_dropped";
    case ErrorCode::kCollectiveAborted: return "collective_aborted";
    case ErrorCode::kCollectivePieces: return "collective_pieces";
    case ErrorCode::kOutOfMemory: return "out_of_memory";
    case ErrorCode::kReplaceNotCheckpoint: return "replace_not_checkpoint";
    case ErrorCode::kReplaceOverlapsSource: return "replace_overlaps_source";
    case ErrorCode::kReplaceSpecialFile: return "replace_special_file";
    case ErrorCode::kUnstorableName: return "unstorable_name";
    case ErrorCode::kOverFormatLimit: return "over_format_limit";
    case ErrorCode::kNotADirectory: return "not_a_directory";
    case ErrorCode::kNotACheckpoint: return "not_a_checkpoint";
    case ErrorCode::kEmptySnapshot: return "empty_snapshot";
    case ErrorCode::kMissingSnapshotDone: return "missing_snapshot_done";
    case ErrorCode::kSnapshotDoneNotEmpty: return "snapshot_done_not_empty";
    case ErrorCode::kSnapshotDoneNotFile: return "snapshot_done_not_file";
    case ErrorCode::kUnsafeName: return "unsafe_name";
    case ErrorCode::kEscapingSymlink: return "escaping_symlink";
    case ErrorCode::kUnexpectedEntry: return "unexpected_entry";
    case ErrorCode::kMissingData: return "missing_data";
    case ErrorCode::kDataNotFile: return "data_not_file";
    case ErrorCode::kUnsupportedLayout: return "unsupported_layout";
    case ErrorCode::kDuplicateName: return "duplicate_name";
    case ErrorCode::kUnknownVariable: return "unknown_variable";
    case ErrorCode::kSymlinkLoop: return "symlink_loop";
    case ErrorCode::kTorchScriptUnreadable: return "torchscript_unreadable";
    case ErrorCode::kRecognisedNotCheckpoint: return "recognised_not_checkpoint";
    case ErrorCode::kMetaMissing: return "meta_missing";
    case ErrorCode::kMetaSyntax: return "meta_syntax";
    case ErrorCode::kMetaUnknownField: return "meta_unknown_field";
    case ErrorCode::kMetaNoDataType: return "meta_no_data_type";
    case ErrorCode::kMetaNegativeDim: return "meta_negative_dim";
    case ErrorCode::kMetaCountOverflow: return "meta_count_overflow";
    case ErrorCode::kMetaUnknownDataType: return "meta_unknown_data_type";
    case ErrorCode::kMetaUnsupportedDataType: return "meta_unsupported_data_type";
    case ErrorCode::kMetaTooLarge: return "meta_too_large";
    case ErrorCode::kDataSizeMismatch: return "data_size_mismatch";
    case ErrorCode::kInvalidBool: return "invalid_bool";
    case ErrorCode::kBufferSizeMismatch: return "buffer_size_mismatch";
    case ErrorCode::kBf16StoredAsFloat32: return "bf16_stored_as_float32";
    case ErrorCode::kNpyMagic: return "npy_magic";
    case ErrorCode::kNpyVersion: return "npy_version";
    case ErrorCode::kNpyHeader: return "npy_header";
    case ErrorCode::kNpyUnsupportedDtype: return "npy_unsupported_dtype";
    case ErrorCode::kNpyTruncated: return "npy_truncated";
    case ErrorCode::kNpyTrailingBytes: return "npy_trailing_bytes";
    case ErrorCode::kNpyTooLargeToReorder: return "npy_too_large_to_reorder";
    case ErrorCode::kNpyUnsupportedMember: return "npy_unsupported_member";
    case ErrorCode::kZipFormat: return "zip_format";
    case ErrorCode::kZipUnsupported: return "zip_unsupported";
    case ErrorCode::kZipUnsafeName: return "zip_unsafe_name";
    case ErrorCode::kZipCrc: return "zip_crc";
    case ErrorCode::kPickleTruncated: return "pickle_truncated";
    case ErrorCode::kPickleMalformed: return "pickle_malformed";
    case ErrorCode::kPickleUnsupportedOpcode: return "pickle_unsupported_opcode";
    case ErrorCode::kPickleForbiddenGlobal: return "pickle_forbidden_global";
    case ErrorCode::kPickleForbiddenCall: return "pickle_forbidden_call";
    case ErrorCode::kPickleLimit: return "pickle_limit";
    case ErrorCode::kPickleStructure: return "pickle_structure";
    case ErrorCode::kPickleNamesFallback: return "pickle_names_fallback";
    case ErrorCode::kSafetensorsTooSmall: return "safetensors_too_small";
    case ErrorCode::kSafetensorsHeaderTooLarge: return "safetensors_header_too_large";
    case ErrorCode::kSafetensorsHeaderLength: return "safetensors_header_length";
    case ErrorCode::kSafetensorsHeaderUtf8: return "safetensors_header_utf8";
    case ErrorCode::kSafetensorsHeaderJson: return "safetensors_header_json";
    case ErrorCode::kSafetensorsHeaderSchema: return "safetensors_header_schema";
    case ErrorCode::kSafetensorsDuplicateKey: return "safetensors_duplicate_key";
    case ErrorCode::kSafetensorsUnknownDtype: return "safetensors_unknown_dtype";
    case ErrorCode::kSafetensorsMetadata: return "safetensors_metadata";
    case ErrorCode::kSafetensorsOffsets: return "safetensors_offsets";
    case ErrorCode::kSafetensorsSizeOverflow: return "safetensors_size_overflow";
    case ErrorCode::kSafetensorsTensorSize: return "safetensors_tensor_size";
    case ErrorCode::kSafetensorsBufferEnd: return "safetensors_buffer_end";
    case ErrorCode::kShardedIndex: return "sharded_index";
    case ErrorCode::kShardedMissingShard: return "sharded_missing_shard";
    case ErrorCode::kShardedMisplacedTensor: return "sharded_misplaced_tensor";
    case ErrorCode::kShardedDuplicateTensor: return "sharded_duplicate_tensor";
    case ErrorCode::kShardedTotalSize: return "sharded_total_size";
    case ErrorCode::kShardedUnlistedTensor: return "sharded_unlisted_tensor";
    case ErrorCode::kShardedChunks: return "sharded_chunks";
    case ErrorCode::kIdxFormat: return "idx_format";
    case ErrorCode::kIdxTruncated: return "idx_truncated";
    case ErrorCode::kIdxTrailingBytes: return "idx_trailing_bytes";
    case ErrorCode::kDatasetMismatch: return "dataset_mismatch";
    case ErrorCode::kStateDictMismatch: return "state_dict_mismatch";
    case ErrorCode::kDeviceError: return "device_error";
  }
  return "unknown";
}

Error& Error::in_file(std::string_view path) {
  if (file_.empty()) file_ = path;
  return *this;
}

Error& Error::in_variable(std::string_view name) {
  if (variable_.empty()) variable_ = name;
  return *this;
}

namespace {

// Length of the UTF-8 sequence starting at text[i] (a code point other than
// a C1 control), or 0 when the bytes there are not one.
std::size_t printable_sequence_length(std::string_view text, std::size_t i) {
  const auto byte = [&](std::size_t k) { return static_cast<unsigned char>(text[k]); };
  const unsigned char lead = byte(i);
  std::size_t length = lead >= 0xF0 && lead <= 0xF4 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC2 && lead < 0xE0 ? 2 : 0;
  if (lead >= 0xF5 || length == 0 || i + length > text.size()) return 0;
  for (std::size_t k = 1; k < length; ++k) {
    if ((byte(i + k) & 0xC0) != 0x80) return 0;
  }
  const unsigned char second = byte(i + 1);
  if (lead == 0xC2 && second < 0xA0) return 0;                 // U+0080..U+009F: C1 controls
  if (lead == 0xE0 && second < 0xA0) return 0;                 // overlong
  if (lead == 0xED && second >= 0xA0) return 0;                // surrogates
  if (lead == 0xF0 && second < 0x90) return 0;                 // overlong
  if (lead == 0xF4 && second >= 0x90) return 0;                // beyond U+10FFFF
  return length;
}

}  // namespace

std::string printable(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size();) {
    const auto byte = static_cast<unsigned char>(text[i]);
    if (byte == '\\') {
      out += "\\\\";
      ++i;
    } else if (byte >= 0x20 && byte < 0x7F) {
      out += static_cast<char>(byte);
      ++i;
    } else if (std::size_t length = byte >= 0x80 ? printable_sequence_length(text, i) : 0; length > 0) {
      out.append(text.substr(i, length));
      i += length;
    } else {
      out += fmt::format("\\x{:02x}", byte);
      ++i;
    }
  }
  return out;
}

std::string Error::describe() const {
  std::string text = fmt::format("{} {}: ", code_id(code_), code_name(code_));
  if (!variable_.empty()) text += fmt::format("variable '{}': ", printable(variable_));
  if (!file_.empty()) text += fmt::format("file '{}': ", printable(file_));
  text += printable(message_);
  return text;
}

}  // namespace ckpt
