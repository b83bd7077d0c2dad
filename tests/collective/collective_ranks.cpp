// Saves and loads tensors split across MPI ranks (spec/collective.md), and
// checks every value against the function that generated it, which is the
// single-process reference. Driven by test_collective.py under mpirun.
//
//   collective_ranks save DIR SET        on any number of ranks
//   collective_ranks load DIR SET        on any number of ranks: boxes unrelated to the save's
//   collective_ranks check PATH SET      one process, no MPI: the whole tensors through open_checkpoint
//   collective_ranks fail DIR            failing ranks: nothing appears, no staging left
//   collective_ranks pids DIR PIDDIR     save SET "large", each rank's pid written to PIDDIR first
//
// SET: "split" (row-, column- and block-split tensors plus whole ones),
// "whole" (every tensor owned whole by one rank), "large" (for the kill test).
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "ckpt/format/checkpoint.hpp"
#include "ckpt/format/collective.hpp"

namespace {

namespace fs = std::filesystem;
using ckpt::DType;
using ckpt::Shape;
using ckpt::TensorBox;

enum class Split { kWhole, kRows, kColumns, kBlocks };

struct Spec {
  std::string name;
  DType dtype;
  Shape shape;
  Split split;
  int owner = 0;  // for kWhole
};

std::vector<Spec> specs(const std::string& set, int ranks) {
  std::vector<Spec> all;
  if (set == "large") {
    all.push_back({"large.rows", DType::kFloat, {512, 4096}, Split::kRows});
    all.push_back({"large.cols", DType::kFloat, {1024, 1024}, Split::kColumns});
  } else if (set == "split") {
    all.push_back({"rows", DType::kFloat, {9, 6}, Split::kRows});
    all.push_back({"cols", DType::kDouble, {5, 12}, Split::kColumns});
    all.push_back({"blocks", DType::kInt32, {6, 8}, Split::kBlocks});
    all.push_back({"cube", DType::kInt16, {4, 3, 5}, Split::kColumns});
  }
  if (set != "large") {
    for (int r = 0; r < ranks; ++r) all.push_back({fmt::format("owned.{}", r), DType::kInt16, {3, 5}, Split::kWhole, r});
    all.push_back({"scalar", DType::kFloat, {}, Split::kWhole, ranks - 1});
  }
  return all;
}

std::int64_t volume(const Shape& shape) {
  std::int64_t count = 1;
  for (auto d : shape) count *= d;
  return count;
}

// Part `part` of `parts` along `dim`.
TensorBox slice(const Shape& shape, std::size_t dim, int part, int parts) {
  TensorBox box{Shape(shape.size(), 0), shape};
  box.offset[dim] = shape[dim] * part / parts;
  box.shape[dim] = shape[dim] * (part + 1) / parts - box.offset[dim];
  return box;
}

// A grid of parts over the first two dims, as square as `parts` allows.
TensorBox block(const Shape& shape, int part, int parts) {
  int columns = 1;
  for (int c = 1; c * c <= parts; ++c) {
    if (parts % c == 0) columns = c;
  }
  TensorBox rows = slice(shape, 0, part / columns, parts / columns);
  TensorBox cols = slice(shape, 1, part % columns, columns);
  rows.offset[1] = cols.offset[1];
  rows.shape[1] = cols.shape[1];
  return rows;
}

TensorBox piece_of(const Spec& spec, int part, int parts) {
  switch (spec.split) {
    case Split::kRows: return slice(spec.shape, 0, part, parts);
    case Split::kColumns: return slice(spec.shape, 1, part, parts);
    case Split::kBlocks: return block(spec.shape, part, parts);
    case Split::kWhole: break;
  }
  return {Shape(spec.shape.size(), 0), spec.shape};
}

// The reference: element i (C order over the tensor) of tensor `id` is
// id * 1000 + i, cut to the dtype (exact in every dtype used here, but
// large.* wraps in float as any value would).
template <class T>
void fill(std::vector<std::byte>& out, const Spec& spec, std::size_t id, const TensorBox& box) {
  const std::size_t rank = spec.shape.size();
  Shape position = box.offset;
  const std::int64_t count = volume(box.shape);
  out.resize(static_cast<std::size_t>(count) * sizeof(T));
  for (std::int64_t i = 0; i < count; ++i) {
    std::int64_t global = 0;
    for (std::size_t d = 0; d < rank; ++d) global = global * spec.shape[d] + position[d];
    const T value = static_cast<T>(static_cast<std::int64_t>(id) * 1000 + global);
    std::memcpy(out.data() + static_cast<std::size_t>(i) * sizeof(T), &value, sizeof(T));
    for (std::size_t d = rank; d > 0; --d) {
      if (++position[d - 1] < box.offset[d - 1] + box.shape[d - 1]) break;
      position[d - 1] = box.offset[d - 1];
    }
  }
}

std::vector<std::byte> expected(const Spec& spec, std::size_t id, const TensorBox& box) {
  std::vector<std::byte> out;
  switch (spec.dtype) {
    case DType::kFloat: fill<float>(out, spec, id, box); break;
    case DType::kDouble: fill<double>(out, spec, id, box); break;
    case DType::kInt32: fill<std::int32_t>(out, spec, id, box); break;
    default: fill<std::int16_t>(out, spec, id, box); break;
  }
  return out;
}

int fail_with(const std::string& what) {
  std::fprintf(stderr, "%s\n", what.c_str());
  return 1;
}

int save(const fs::path& directory, const std::string& set, MPI_Comm comm, ckpt::WriteOptions options = {}) {
  int rank = 0, ranks = 0;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &ranks);
  const auto all = specs(set, ranks);
  std::vector<std::vector<std::byte>> buffers(all.size());  // alive until commit returns
  auto writer = ckpt::CollectiveWriter::create(directory, comm, std::move(options));
  if (!writer.ok()) return fail_with(fmt::format("rank {}: {}", rank, writer.error().describe()));
  for (std::size_t id = 0; id < all.size(); ++id) {
    const Spec& spec = all[id];
    if (spec.split == Split::kWhole && spec.owner != rank) continue;
    const TensorBox box = piece_of(spec, rank, ranks);
    buffers[id] = expected(spec, id, box);
    auto added = writer->add(spec.name, spec.dtype, spec.shape, box, buffers[id]);
    if (!added.ok()) return fail_with(fmt::format("rank {}: {}", rank, added.error().describe()));
  }
  auto committed = writer->commit();
  if (!committed.ok()) return fail_with(fmt::format("rank {}: {}", rank, committed.error().describe()));
  return 0;
}

// Every rank reads, for every tensor, its rows, its columns, a block of a
// grid and the whole, with its own rank count: unrelated to the save's split.
int load(const fs::path& directory, const std::string& set, int saved_ranks) {
  int rank = 0, ranks = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &ranks);
  auto reader = ckpt::CollectiveReader::open(directory, MPI_COMM_WORLD);
  if (!reader.ok()) return fail_with(fmt::format("rank {}: {}", rank, reader.error().describe()));
  const auto all = specs(set, saved_ranks);
  int mismatches = 0;
  if (reader->tensors().size() != all.size()) {
    ++mismatches;
    std::fprintf(stderr, "rank %d: %zu tensors, expected %zu\n", rank, reader->tensors().size(), all.size());
  }
  for (std::size_t id = 0; id < all.size(); ++id) {
    const Spec& spec = all[id];
    std::vector<TensorBox> boxes = {{Shape(spec.shape.size(), 0), spec.shape}};
    if (!spec.shape.empty()) boxes.push_back(slice(spec.shape, 0, rank, ranks));
    if (spec.shape.size() >= 2) {
      boxes.push_back(slice(spec.shape, 1, rank, ranks));
      boxes.push_back(block(spec.shape, rank, ranks));
    }
    for (const auto& box : boxes) {
      const auto want = expected(spec, id, box);
      std::vector<std::byte> got(want.size());
      auto read = reader->read(spec.name, box, got);
      if (!read.ok() || got != want) {
        ++mismatches;
        std::fprintf(stderr, "rank %d: %s box offset %s shape %s: %s\n", rank, spec.name.c_str(),
                     ckpt::shape_to_string(box.offset).c_str(), ckpt::shape_to_string(box.shape).c_str(),
                     read.ok() ? "values differ" : read.error().describe().c_str());
      }
    }
  }
  int total = 0;
  MPI_Allreduce(&mismatches, &total, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  if (rank == 0) std::printf("load on %d ranks of a save on %d: %d mismatches\n", ranks, saved_ranks, total);
  return total == 0 ? 0 : 1;
}

// One process: the whole tensors as open_checkpoint reads them (a chunked
// set, or what ckpt-convert consolidated it to).
int check(const fs::path& path, const std::string& set, int saved_ranks) {
  auto reader = ckpt::open_checkpoint(path);
  if (!reader.ok()) return fail_with(reader.error().describe());
  const auto all = specs(set, saved_ranks);
  int mismatches = (*reader)->tensors().size() == all.size() ? 0 : 1;
  for (std::size_t id = 0; id < all.size(); ++id) {
    const Spec& spec = all[id];
    const auto want = expected(spec, id, {Shape(spec.shape.size(), 0), spec.shape});
    std::vector<std::byte> got(want.size());
    auto source = (*reader)->open(spec.name);
    // Read in odd-sized ranges: each cuts elements and rows.
    for (std::size_t at = 0; source.ok() && at < got.size(); at += 7) {
      auto part = std::span(got).subspan(at, std::min<std::size_t>(7, got.size() - at));
      if (!(*source)->read_at(at, part).ok()) source = ckpt::Error(ckpt::ErrorCode::kIo, "read failed");
    }
    if (!source.ok() || got != want) {
      ++mismatches;
      std::fprintf(stderr, "%s: %s\n", spec.name.c_str(), source.ok() ? "values differ" : source.error().describe().c_str());
    }
  }
  std::printf("%s (%s): %zu tensors, %d mismatches\n", path.c_str(), std::string((*reader)->format_name()).c_str(),
              (*reader)->tensors().size(), mismatches);
  return mismatches == 0 ? 0 : 1;
}

bool has_staging_leftover(const fs::path& directory) {
  for (const auto& entry : fs::directory_iterator(directory.parent_path())) {
    if (entry.path().filename().string().find(ckpt::kStagingMarker) != std::string::npos) return true;
  }
  return false;
}

// Each failure on one rank must fail the commit on every rank, with the
// failing rank's own code there and E192 elsewhere, and leave nothing.
int fail(const fs::path& directory) {
  int rank = 0, ranks = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &ranks);
  const int culprit = ranks - 1;
  int wrong = 0;
  auto expect = [&](const std::string& what, ckpt::Status status, ckpt::ErrorCode on_culprit, ckpt::ErrorCode elsewhere) {
    const ckpt::ErrorCode want = rank == culprit ? on_culprit : elsewhere;
    if (status.ok() || status.error().code() != want) {
      ++wrong;
      std::fprintf(stderr, "rank %d, %s: expected E%d, got %s\n", rank, what.c_str(), static_cast<int>(want),
                   status.ok() ? "success" : status.error().describe().c_str());
    }
    MPI_Barrier(MPI_COMM_WORLD);
    if (rank == 0 && (fs::exists(directory) || has_staging_leftover(directory))) {
      ++wrong;
      std::fprintf(stderr, "%s: the destination or a staging directory is left\n", what.c_str());
    }
    MPI_Barrier(MPI_COMM_WORLD);
  };
  const Shape shape = {4, 4};
  std::vector<std::byte> bytes(4 * 4 * sizeof(float));

  // A write fails on the culprit (its injected fault).
  {
    ckpt::WriteOptions options;
    if (rank == culprit) options.fault_hook = [](ckpt::IoStep step, const fs::path&) { return step == ckpt::IoStep::kWrite; };
    auto writer = ckpt::CollectiveWriter::create(directory, MPI_COMM_WORLD, std::move(options));
    const TensorBox box = slice(shape, 0, rank, ranks);
    auto added = writer->add("t", DType::kFloat, shape, box, std::span(bytes).first(static_cast<std::size_t>(volume(box.shape)) * 4));
    expect("a failed write", added.ok() ? writer->commit() : added, ckpt::ErrorCode::kInjectedFault,
           ckpt::ErrorCode::kCollectiveAborted);
  }
  // The culprit adds a piece outside the tensor: its add fails, so does every commit.
  {
    auto writer = ckpt::CollectiveWriter::create(directory, MPI_COMM_WORLD);
    TensorBox box = slice(shape, 0, rank, ranks);
    if (rank == culprit) box.offset[0] = 4;
    auto added = writer->add("t", DType::kFloat, shape, box, std::span(bytes).first(static_cast<std::size_t>(volume(box.shape)) * 4));
    if (rank == culprit && added.ok()) ++wrong;
    expect("a piece outside the tensor", writer->commit(), ckpt::ErrorCode::kCollectivePieces,
           ckpt::ErrorCode::kCollectiveAborted);
  }
  // Every rank's add is fine, but two pieces overlap: E193 on every rank.
  {
    auto writer = ckpt::CollectiveWriter::create(directory, MPI_COMM_WORLD);
    const TensorBox box = rank == culprit ? slice(shape, 0, 0, ranks) : slice(shape, 0, rank, ranks);
    auto added = writer->add("t", DType::kFloat, shape, box, std::span(bytes).first(static_cast<std::size_t>(volume(box.shape)) * 4));
    expect("overlapping pieces", added.ok() ? writer->commit() : added, ckpt::ErrorCode::kCollectivePieces,
           ckpt::ErrorCode::kCollectivePieces);
  }
  int total = 0;
  MPI_Allreduce(&wrong, &total, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  if (rank == 0) std::printf("failing ranks on %d ranks: %d unexpected outcomes\n", ranks, total);
  return total == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) return fail_with("usage: see the comment at the top of collective_ranks.cpp");
  const std::string mode = argv[1];
  const fs::path path = argv[2];
  const std::string set = argc > 3 ? argv[3] : "split";
  const int saved_ranks = argc > 4 ? std::stoi(argv[4]) : 4;
  if (mode == "check") return check(path, set, saved_ranks);
  MPI_Init(&argc, &argv);
  int status = 1;
  if (mode == "save") {
    status = save(path, set, MPI_COMM_WORLD);
  } else if (mode == "load") {
    status = load(path, set, saved_ranks);
  } else if (mode == "fail") {
    status = fail(path);
  } else if (mode == "pids") {
    int rank = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    std::ofstream(fs::path(argv[3]) / fmt::format("rank{}", rank)) << ::getpid() << "\n";
    MPI_Barrier(MPI_COMM_WORLD);
    status = save(path, "large", MPI_COMM_WORLD);
  } else {
    status = fail_with("unknown mode " + mode);
  }
  MPI_Finalize();
  return status;
}
