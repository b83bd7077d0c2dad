// One error type for the whole library: a stable code, a message, and the
// context (file, variable, field) it gained on its way up. Codes come in
// families and are documented in spec/errors.md; their numbers never change.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace ckpt {

enum class ErrorCode : std::uint16_t {
  // 1xx: input/output and usage
  kIo = 101,                 // a system call failed (errno text in the message)
  kNotFound = 102,           // the path does not exist
  kDestinationExists = 103,  // a writer refused to replace an existing path
  kInvalidArgument = 104,    // the caller passed something unusable
  kInjectedFault = 105,      // a test hook made an operation fail
  kBusy = 106,               // another writer holds the destination
  kObjectDataDropped = 150,  // a conversion to a flat format would drop non-tensor data (strict)
  kOutOfMemory = 160,        // an allocation the input asked for failed
  // Replacing (overwrite / --force) and writing what a reader accepts; spec/writing.md
  kReplaceNotCheckpoint = 170,    // the directory to replace is not a checkpoint of a known format
  kReplaceOverlapsSource = 171,   // the destination is, holds or lies inside the source being read
  kReplaceSpecialFile = 172,      // the path to replace is neither a regular file nor a directory
  kUnstorableName = 173,          // a name the format stores as text is not UTF-8 (or empty in a pickle)
  kOverFormatLimit = 174,         // a header, meta, rank or dim over what the format's readers accept
  // Collective (MPI) saves and loads; spec/collective.md
  kCollectiveAborted = 192,  // another MPI rank failed, so this rank's collective save or load stopped
  kCollectivePieces = 193,   // the ranks' pieces of a tensor do not tile it, or a box is outside it

  // 2xx: checkpoint layout
  kNotADirectory = 201,
  kNotACheckpoint = 202,      // no variable and no marker: nothing OneFlow wrote
  kEmptySnapshot = 203,       // a marker but no variable
  kMissingSnapshotDone = 204,
  kSnapshotDoneNotEmpty = 205,
  kSnapshotDoneNotFile = 206,
  kUnsafeName = 207,          // a variable name that cannot be one directory level
  kEscapingSymlink = 208,     // meta/out/variable dir resolves outside the checkpoint
  kUnexpectedEntry = 209,     // a file or directory OneFlow would not have written
  kMissingData = 210,         // a variable directory without `out`
  kDataNotFile = 211,         // `out` or `meta` is not a regular file
  kUnsupportedLayout = 212,   // recognised, but this version cannot read it
  kDuplicateName = 213,
  kUnknownVariable = 214,     // asked for a variable the checkpoint does not have
  kSymlinkLoop = 260,         // a symlink in the checkpoint that resolves to itself
  kTorchScriptUnreadable = 290,  // a TorchScript archive whose pickles hold more than tensors and modules
  kRecognisedNotCheckpoint = 291,  // no format matched, but the bytes are recognisable (an LFS pointer, HTML, ...)

  // 3xx: the `meta` text
  kMetaMissing = 301,
  kMetaSyntax = 302,
  kMetaUnknownField = 303,
  kMetaNoDataType = 304,
  kMetaNegativeDim = 305,
  kMetaCountOverflow = 306,
  kMetaUnknownDataType = 307,
  kMetaUnsupportedDataType = 308,  // known, but without a fixed element size
  kMetaTooLarge = 309,

  // 4xx: variable data (`out`) against its meta
  kDataSizeMismatch = 401,
  kBufferSizeMismatch = 402,  // the caller's buffer does not fit the variable
  kInvalidBool = 460,         // a bool tensor holds a byte other than 0 or 1
  kBf16StoredAsFloat32 = 480,  // a kBFloat16 `out` of float32 values (OneFlow 0.9's save); read rounded

  // 5xx: .npy files
  kNpyMagic = 501,
  kNpyVersion = 502,
  kNpyHeader = 503,
  kNpyUnsupportedDtype = 504,
  kNpyTruncated = 505,
  kNpyTrailingBytes = 506,
  kNpyTooLargeToReorder = 507,  // Fortran-order data over the in-memory cap
  kNpyUnsupportedMember = 540,  // an npz member of a type ckpt cannot represent (listed; dropped only if asked)

  // 6xx: zip containers (.npz)
  kZipFormat = 601,
  kZipUnsupported = 602,
  kZipUnsafeName = 603,
  kZipCrc = 604,

  // 7xx: pickles (OneFlow pickle directories, torch files); spec/pickle.md
  kPickleTruncated = 701,           // the stream ends inside an opcode or before STOP
  kPickleMalformed = 702,           // an opcode on the wrong operands, a bad argument, bytes after STOP
  kPickleUnsupportedOpcode = 703,   // an opcode a data-only reader does not run
  kPickleForbiddenGlobal = 704,     // a GLOBAL outside the allow-list
  kPickleForbiddenCall = 705,       // REDUCE/NEWOBJ/BUILD/persistent id the allow-list does not permit
  kPickleLimit = 706,               // a cap on stack, memo, depth, size or nodes was exceeded
  kPickleStructure = 707,           // a valid pickle whose content the format does not allow
  kPickleNamesFallback = 730,       // P1 tensors read under their tensor_N names: pickled_data gives none

  // 8xx: safetensors files
  kSafetensorsTooSmall = 801,          // shorter than the 8-byte header length
  kSafetensorsHeaderTooLarge = 802,    // header length over the 100 MB cap
  kSafetensorsHeaderLength = 803,      // the header runs past the end of the file
  kSafetensorsHeaderUtf8 = 804,        // the header (or a name to write) is not UTF-8
  kSafetensorsHeaderJson = 805,        // not JSON, or not a JSON object
  kSafetensorsHeaderSchema = 806,      // an entry without dtype/shape/data_offsets of the right types
  kSafetensorsDuplicateKey = 807,      // a name (or a field) given twice
  kSafetensorsUnknownDtype = 808,      // a dtype string with no OneFlow equivalent
  kSafetensorsMetadata = 809,          // __metadata__ not a string -> string object
  kSafetensorsOffsets = 810,           // data_offsets not contiguous from 0 (hole, overlap, end < begin)
  kSafetensorsSizeOverflow = 811,      // element or byte count does not fit in 64 bits
  kSafetensorsTensorSize = 812,        // end - begin differs from the bytes of dtype x shape
  kSafetensorsBufferEnd = 813,         // the data does not end exactly at the end of the file
  // sharded sets: shards plus model.safetensors.index.json (spec/safetensors-sharded.md)
  kShardedIndex = 820,                 // the index is not {"metadata": {...}, "weight_map": {name: file}}
  kShardedMissingShard = 821,          // a shard the weight_map names is absent
  kShardedMisplacedTensor = 822,       // the weight_map names a tensor its file does not hold
  kShardedDuplicateTensor = 823,       // a tensor held by two shards
  kShardedTotalSize = 824,             // metadata.total_size differs from the tensors' bytes
  kShardedUnlistedTensor = 825,        // a shard holds a tensor the weight_map does not name
  kShardedChunks = 892,                // the index's chunked_tensors are malformed or disagree with the shards

  // 9xx: training and its data (libtrain); 7xx is the pickle family, 8xx safetensors
  kIdxFormat = 901,          // not an IDX file of unsigned bytes: magic, type or rank
  kIdxTruncated = 902,       // fewer bytes than the header's dims promise
  kIdxTrailingBytes = 903,   // more bytes than the header's dims promise
  kDatasetMismatch = 904,    // image and label files disagree, or a label is out of range
  kStateDictMismatch = 905,  // a snapshot's variables differ from the model's: name, shape or dtype
  kDeviceError = 906,        // a CUDA or cuBLAS call failed, or no usable GPU
};

enum class Severity : std::uint8_t { kWarning, kError };

// "E302" for kMetaSyntax, "W303" never: the letter is the family, not the severity.
std::string code_id(ErrorCode code);
// A short stable name, "meta_syntax".
std::string_view code_name(ErrorCode code);

// `text` safe to print on a terminal: control characters (C0, DEL, C1),
// ESC and BEL included, and bytes that are not UTF-8 become "\xNN"; a
// backslash becomes "\\", so the escaped form reads back unambiguously.
// Names and other text taken from a file pass through it before reaching
// a terminal; JSON output escapes through its encoder instead.
std::string printable(std::string_view text);

class Error {
 public:
  Error(ErrorCode code, std::string message) : code_(code), message_(std::move(message)) {}

  ErrorCode code() const { return code_; }
  // The message without context.
  const std::string& message() const { return message_; }
  const std::string& file() const { return file_; }
  const std::string& variable() const { return variable_; }

  // Context is added by callers as the error travels up; the innermost wins,
  // so a file named near the failure is not overwritten by an outer one.
  Error& in_file(std::string_view path);
  Error& in_variable(std::string_view name);

  // "E401 data_size_mismatch: variable 'l1.bias': file '/x/l1.bias/out': expected ..., found ..."
  // Safe for a terminal: variable, file and message pass through printable().
  std::string describe() const;

 private:
  ErrorCode code_;
  std::string message_;
  std::string file_;
  std::string variable_;
};

// A value or the Error that prevented it. Cheap to move, must be looked at.
template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : state_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Error error) : state_(std::move(error)) {}  // NOLINT

  bool ok() const { return state_.index() == 0; }
  explicit operator bool() const { return ok(); }

  T& value() & { return std::get<0>(state_); }
  const T& value() const& { return std::get<0>(state_); }
  T&& value() && { return std::get<0>(std::move(state_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

  const Error& error() const& { return std::get<1>(state_); }
  Error&& error() && { return std::get<1>(std::move(state_)); }

 private:
  std::variant<T, Error> state_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error) : error_(std::move(error)) {}  // NOLINT

  bool ok() const { return !error_.has_value(); }
  explicit operator bool() const { return ok(); }
  const Error& error() const& { return *error_; }
  Error&& error() && { return std::move(*error_); }

 private:
  std::optional<Error> error_;
};

using Status = Result<void>;

}  // namespace ckpt

// Propagate an error from an expression returning Result/Status.
#define CKPT_TRY(expr)                                  \
  do {                                                  \
    auto ckpt_try_result_ = (expr);                     \
    if (!ckpt_try_result_.ok()) return std::move(ckpt_try_result_).error(); \
  } while (0)

#define CKPT_CONCAT_INNER_(a, b) a##b
#define CKPT_CONCAT_(a, b) CKPT_CONCAT_INNER_(a, b)

// `CKPT_ASSIGN_OR_RETURN(auto meta, VariableMeta::make(dtype, shape));`
#define CKPT_ASSIGN_OR_RETURN(decl, expr)                                    \
  auto CKPT_CONCAT_(ckpt_result_, __LINE__) = (expr);                        \
  if (!CKPT_CONCAT_(ckpt_result_, __LINE__).ok())                            \
    return std::move(CKPT_CONCAT_(ckpt_result_, __LINE__)).error();          \
  decl = std::move(CKPT_CONCAT_(ckpt_result_, __LINE__)).value()
