#include "ckpt/format/collective.hpp"

#include <algorithm>
#include <climits>
#include <map>
#include <set>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "ckpt/format/safetensors.hpp"
#include "safetensors/safetensors_staging.hpp"

namespace ckpt {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

int rank_of(MPI_Comm comm) {
  int rank = 0;
  MPI_Comm_rank(comm, &rank);
  return rank;
}

int size_of(MPI_Comm comm) {
  int size = 0;
  MPI_Comm_size(comm, &size);
  return size;
}

// `text` of rank `root` on every rank.
std::string broadcast(MPI_Comm comm, int root, std::string text) {
  unsigned long long length = text.size();
  MPI_Bcast(&length, 1, MPI_UNSIGNED_LONG_LONG, root, comm);
  text.resize(length);
  MPI_Bcast(text.data(), static_cast<int>(length), MPI_CHAR, root, comm);
  return text;
}

// Collective: ok on every rank when `local` is ok on every rank. Otherwise
// the lowest failing rank's error: its own on that rank, E192 naming it on
// the others (ranks that failed later keep their own error).
Status agree(MPI_Comm comm, Status local) {
  const int rank = rank_of(comm);
  int failing = local.ok() ? INT_MAX : rank;
  int first_failing = INT_MAX;
  MPI_Allreduce(&failing, &first_failing, 1, MPI_INT, MPI_MIN, comm);
  if (first_failing == INT_MAX) return {};
  const std::string message = broadcast(comm, first_failing, local.ok() ? std::string() : local.error().describe());
  if (!local.ok()) return local;
  return Error(ErrorCode::kCollectiveAborted, fmt::format("rank {} failed: {}", first_failing, message));
}

// One rank's piece as every rank learns it.
struct Piece {
  int rank;
  std::string name;         // the tensor's
  VariableMeta global;      // the tensor's dtype and shape
  TensorBox box;
  std::string stored_name;  // the tensor's name when whole, else its chunk's
  VariableMeta meta;        // of the stored piece
  std::size_t local_index;  // among its rank's pieces, in the order added
};

json piece_to_json(const std::string& name, const VariableMeta& global, const TensorBox& box) {
  return {{"name", name},
          {"dtype", dtype_info(global.dtype()).safetensors},
          {"shape", global.shape()},
          {"offset", box.offset},
          {"piece", box.shape}};
}

bool is_whole(const TensorBox& box, const Shape& shape) {
  return box.shape == shape && std::all_of(box.offset.begin(), box.offset.end(), [](auto d) { return d == 0; });
}

// The pieces every rank added, from the all-gathered descriptions.
Result<std::vector<Piece>> all_pieces(MPI_Comm comm, const std::string& local_description) {
  const int size = size_of(comm);
  int length = static_cast<int>(local_description.size());
  std::vector<int> lengths(static_cast<std::size_t>(size)), starts(static_cast<std::size_t>(size));
  MPI_Allgather(&length, 1, MPI_INT, lengths.data(), 1, MPI_INT, comm);
  long long total = 0;
  for (int r = 0; r < size; ++r) {
    starts[static_cast<std::size_t>(r)] = static_cast<int>(total);
    total += lengths[static_cast<std::size_t>(r)];
  }
  if (total > INT_MAX) {
    return Error(ErrorCode::kCollectivePieces, fmt::format("the piece lists of all ranks take {} bytes, over 2 GiB", total));
  }
  std::string everything(static_cast<std::size_t>(total), '\0');
  MPI_Allgatherv(local_description.data(), length, MPI_CHAR, everything.data(), lengths.data(), starts.data(),
                 MPI_CHAR, comm);
  std::vector<Piece> pieces;
  std::set<std::string> empty_tensors_stored;
  for (int r = 0; r < size; ++r) {
    const json list = json::parse(everything.substr(static_cast<std::size_t>(starts[static_cast<std::size_t>(r)]),
                                                    static_cast<std::size_t>(lengths[static_cast<std::size_t>(r)])));
    for (std::size_t local_index = 0; local_index < list.size(); ++local_index) {
      const json& item = list[local_index];
      const DType dtype = *dtype_from_safetensors(item["dtype"].get<std::string>());
      CKPT_ASSIGN_OR_RETURN(VariableMeta global, VariableMeta::make(dtype, item["shape"].get<Shape>()));
      TensorBox box{item["offset"].get<Shape>(), item["piece"].get<Shape>()};
      CKPT_ASSIGN_OR_RETURN(VariableMeta meta, VariableMeta::make(dtype, box.shape));
      std::string name = item["name"].get<std::string>();
      // A piece without elements adds nothing; a tensor without elements is
      // stored once, from its first piece.
      if (meta.element_count() == 0 && (global.element_count() != 0 || !empty_tensors_stored.insert(name).second)) {
        continue;
      }
      std::string stored = is_whole(box, global.shape()) ? name : chunk_tensor_name(name, box.offset);
      pieces.push_back({r, std::move(name), std::move(global), std::move(box), std::move(stored), std::move(meta),
                        local_index});
    }
  }
  return pieces;
}

// Every tensor's pieces agree on dtype and shape and tile it; no two stored
// names collide. The same verdict on every rank: all see the same pieces.
Status check_pieces(const std::vector<Piece>& pieces) {
  std::map<std::string_view, std::vector<const Piece*>> by_tensor;
  std::set<std::string_view> stored_names;
  for (const auto& piece : pieces) {
    by_tensor[piece.name].push_back(&piece);
    if (!stored_names.insert(piece.stored_name).second) {
      return Error(ErrorCode::kCollectivePieces,
                   fmt::format("the name '{}' is stored twice (a second whole tensor, or a chunk of another tensor)",
                               piece.stored_name))
          .in_variable(piece.name);
    }
  }
  for (const auto& [name, members] : by_tensor) {
    std::vector<TensorBox> boxes;
    for (const Piece* piece : members) {
      if (!(piece->global == members.front()->global)) {
        return Error(ErrorCode::kCollectivePieces,
                     fmt::format("rank {} says {} {}, rank {} says {} {}", members.front()->rank,
                                 dtype_info(members.front()->global.dtype()).safetensors,
                                 shape_to_string(members.front()->global.shape()), piece->rank,
                                 dtype_info(piece->global.dtype()).safetensors, shape_to_string(piece->global.shape())))
            .in_variable(name);
      }
      boxes.push_back(piece->box);
    }
    if (auto problem = tiling_problem(members.front()->global.shape(), boxes); !problem.empty()) {
      return Error(ErrorCode::kCollectivePieces, "the pieces of all ranks do not tile the tensor: " + problem)
          .in_variable(name);
    }
  }
  return {};
}

// One rank's file: its pieces in file order, each with its data offset.
struct FileLayout {
  std::string file_name;
  std::string header;                   // length field, JSON, padding
  std::vector<const Piece*> in_order;
  std::vector<std::uint64_t> begins;    // of each piece in the data section
};

const std::map<std::string, std::string>& shard_metadata() {
  // As save_torch_state_dict: every shard says it holds torch-loadable tensors.
  static const std::map<std::string, std::string> metadata = {{"format", "pt"}};
  return metadata;
}

// The file of each rank that holds pieces, numbered in rank order.
Result<std::map<int, FileLayout>> lay_out_files(const std::vector<Piece>& pieces, const fs::path& destination) {
  std::map<int, std::vector<const Piece*>> by_rank;
  for (const auto& piece : pieces) by_rank[piece.rank].push_back(&piece);
  std::map<int, FileLayout> layouts;
  std::size_t number = 0;
  for (auto& [rank, members] : by_rank) {
    struct Entry {
      std::string_view name;
      VariableMeta meta;
      const Piece* piece;
    };
    std::vector<Entry> entries;
    for (const Piece* piece : members) entries.push_back({piece->stored_name, piece->meta, piece});
    detail::sort_in_safetensors_order(entries);
    FileLayout layout;
    layout.file_name = shard_file_name(number++, by_rank.size());
    std::vector<detail::HeaderEntry> header;
    std::uint64_t offset = 0;
    for (const auto& entry : entries) {
      header.push_back({entry.name, &entry.meta});
      layout.in_order.push_back(entry.piece);
      layout.begins.push_back(offset);
      offset += entry.meta.byte_size();
    }
    CKPT_ASSIGN_OR_RETURN(layout.header, detail::safetensors_header_bytes(header, shard_metadata(),
                                                                          (destination / layout.file_name).string()));
    layouts.emplace(rank, std::move(layout));
  }
  return layouts;
}

// The Hugging Face index, plus chunked_tensors when some tensor is split.
std::string index_text(const std::map<int, FileLayout>& layouts) {
  std::map<std::string, std::string> weight_map;
  std::map<std::string, json> chunked;
  std::uint64_t total_size = 0;
  for (const auto& [rank, layout] : layouts) {
    for (std::size_t i = 0; i < layout.in_order.size(); ++i) {
      const Piece& piece = *layout.in_order[i];
      weight_map[piece.stored_name] = layout.file_name;
      total_size += piece.meta.byte_size();
      if (piece.stored_name == piece.name) continue;
      json& entry = chunked[piece.name];
      if (entry.is_null()) {
        entry = {{"dtype", dtype_info(piece.global.dtype()).safetensors},
                 {"shape", piece.global.shape()},
                 {"chunks", json::array()}};
      }
      entry["chunks"].push_back({{"tensor", piece.stored_name},
                                 {"offset", piece.box.offset},
                                 {"shape", piece.box.shape},
                                 {"file", layout.file_name},
                                 {"data_offsets", {layout.begins[i], layout.begins[i] + piece.meta.byte_size()}}});
    }
  }
  nlohmann::ordered_json index = nlohmann::ordered_json::object();
  index["metadata"]["total_size"] = total_size;
  index["weight_map"] = weight_map;
  if (!chunked.empty()) index[std::string(kChunkedTensorsKey)] = chunked;
  return index.dump(2, ' ', /*ensure_ascii=*/true);
}

}  // namespace

struct CollectiveWriter::State {
  MPI_Comm comm;
  int rank;
  fs::path destination;
  fs::path staging;
  WriteOptions options;
  std::optional<AtomicDirectory> directory;  // rank 0's
  // The pieces added here, their bytes the caller's.
  std::vector<std::string> names;
  std::vector<VariableMeta> globals;
  std::vector<TensorBox> boxes;
  std::vector<std::span<const std::byte>> bytes;
  Status failed_add;
  bool done = false;

  Status write_own_file(const FileLayout& layout) const {
    CKPT_ASSIGN_OR_RETURN(FileSink sink, FileSink::create(staging / layout.file_name, options.fault_hook,
                                                          SyncMode::kFsync, destination / layout.file_name));
    CKPT_TRY(sink.write(as_bytes(layout.header)));
    for (const Piece* piece : layout.in_order) CKPT_TRY(sink.write(bytes[piece->local_index]));
    return sink.finish();
  }

  Status publish(const std::map<int, FileLayout>& layouts) {
    const std::string text = index_text(layouts);
    if (text.size() > kShardedMaxIndexBytes) {
      return Error(ErrorCode::kShardedIndex,
                   fmt::format("the index would be {} bytes, over the cap of {}", text.size(), kShardedMaxIndexBytes))
          .in_file(destination.string());
    }
    CKPT_ASSIGN_OR_RETURN(FileSink index, directory->create_file(std::string(kShardedIndexName)));
    CKPT_TRY(index.write(as_bytes(text)));
    CKPT_TRY(index.finish());
    return directory->commit();
  }
};

CollectiveWriter::CollectiveWriter(std::unique_ptr<State> state) : state_(std::move(state)) {}
CollectiveWriter::CollectiveWriter(CollectiveWriter&&) noexcept = default;
CollectiveWriter::~CollectiveWriter() = default;

const fs::path& CollectiveWriter::destination() const { return state_->destination; }

Result<CollectiveWriter> CollectiveWriter::create(const fs::path& destination, MPI_Comm comm, WriteOptions options) {
  auto state = std::make_unique<State>();
  state->comm = comm;
  state->rank = rank_of(comm);
  state->destination = without_trailing_separator(destination);
  state->options = options;
  Status created;
  if (state->rank == 0) {
    auto directory = AtomicDirectory::create(state->destination, std::move(options));
    if (directory.ok()) {
      state->directory.emplace(std::move(directory).value());
    } else {
      created = std::move(directory).error();
    }
  }
  CKPT_TRY(agree(comm, std::move(created)));
  state->staging = broadcast(comm, 0, state->rank == 0 ? state->directory->staging().string() : std::string());
  return CollectiveWriter(std::move(state));
}

Status CollectiveWriter::add(std::string_view name, DType dtype, const Shape& global_shape, const TensorBox& box,
                             std::span<const std::byte> bytes) {
  auto checked = [&]() -> Status {
    auto refuse = [&](ErrorCode code, std::string why) {
      return Error(code, std::move(why)).in_variable(name).in_file(state_->destination.string());
    };
    if (state_->done) return refuse(ErrorCode::kInvalidArgument, "the writer has already committed");
    if (name.empty() || !is_valid_utf8(name)) return refuse(ErrorCode::kInvalidArgument, "empty or not UTF-8");
    if (dtype_info(dtype).safetensors.empty()) {
      return refuse(ErrorCode::kSafetensorsUnknownDtype, fmt::format("safetensors has no type for {}", dtype_name(dtype)));
    }
    CKPT_ASSIGN_OR_RETURN(VariableMeta global, VariableMeta::make(dtype, global_shape));
    if (auto outside = box_outside(box, global_shape); !outside.empty()) {
      return refuse(ErrorCode::kCollectivePieces, "the piece's " + outside);
    }
    CKPT_ASSIGN_OR_RETURN(VariableMeta piece, VariableMeta::make(dtype, box.shape));
    if (bytes.size() != piece.byte_size()) {
      return refuse(ErrorCode::kBufferSizeMismatch, fmt::format("the piece {} of {} needs {} bytes, given {}",
                                                                shape_to_string(box.shape), dtype_name(dtype),
                                                                piece.byte_size(), bytes.size()));
    }
    state_->names.emplace_back(name);
    state_->globals.push_back(std::move(global));
    state_->boxes.push_back(box);
    state_->bytes.push_back(bytes);
    return {};
  }();
  if (!checked.ok() && state_->failed_add.ok()) state_->failed_add = checked;
  return checked;
}

Status CollectiveWriter::commit() {
  State& state = *state_;
  if (state.done) {
    return Error(ErrorCode::kInvalidArgument, "already committed").in_file(state.destination.string());
  }
  state.done = true;
  // A failed commit removes the staging directory at once (rank 0 owns it).
  auto fail = [&](Error error) {
    state.directory.reset();
    return error;
  };
  json local = json::array();
  for (std::size_t i = 0; i < state.names.size(); ++i) {
    local.push_back(piece_to_json(state.names[i], state.globals[i], state.boxes[i]));
  }
  if (auto added = agree(state.comm, state.failed_add); !added.ok()) return fail(added.error());
  auto pieces = all_pieces(state.comm, local.dump());
  if (!pieces.ok()) return fail(pieces.error());
  if (auto checked = check_pieces(*pieces); !checked.ok()) return fail(checked.error());
  if (pieces->empty()) return fail(Error(ErrorCode::kInvalidArgument, "no rank added a piece").in_file(state.destination.string()));
  auto layouts = lay_out_files(*pieces, state.destination);
  if (!layouts.ok()) return fail(layouts.error());
  Status written;
  if (auto own = layouts->find(state.rank); own != layouts->end()) written = state.write_own_file(own->second);
  if (auto all_written = agree(state.comm, std::move(written)); !all_written.ok()) return fail(all_written.error());
  Status published;
  if (state.rank == 0) published = state.publish(*layouts);
  if (auto all_published = agree(state.comm, std::move(published)); !all_published.ok()) {
    return fail(all_published.error());
  }
  return {};
}

CollectiveReader::CollectiveReader(fs::path path, std::vector<ChunkedTensor> tensors)
    : path_(std::move(path)), tensors_(std::move(tensors)) {
  for (const auto& tensor : tensors_) infos_.push_back({tensor.name, tensor.meta});
}

Result<CollectiveReader> CollectiveReader::open(const fs::path& path, MPI_Comm comm) {
  auto tensors = open_sharded_chunks(path);
  CKPT_TRY(agree(comm, tensors.ok() ? Status() : Status(tensors.error())));
  return CollectiveReader(path, std::move(tensors).value());
}

const TensorInfo* CollectiveReader::find(std::string_view name) const {
  auto it = std::lower_bound(infos_.begin(), infos_.end(), name,
                             [](const TensorInfo& info, std::string_view key) { return info.name < key; });
  return it != infos_.end() && it->name == name ? &*it : nullptr;
}

Status CollectiveReader::read(std::string_view name, const TensorBox& box, std::span<std::byte> out) const {
  const TensorInfo* info = find(name);
  if (info == nullptr) {
    return Error(ErrorCode::kUnknownVariable, "no tensor of that name").in_variable(name).in_file(path_.string());
  }
  const ChunkedTensor& tensor = tensors_[static_cast<std::size_t>(info - infos_.data())];
  auto status = read_box(tensor.chunks, tensor.meta.shape(), dtype_size(tensor.meta.dtype()), box, out, name);
  if (!status.ok()) return std::move(std::move(status).error().in_file(path_.string()));
  return {};
}

}  // namespace ckpt
