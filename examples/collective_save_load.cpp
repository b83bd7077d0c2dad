// Multi-rank save and load on MPI (spec/collective.md). Every rank owns a
// band of rows of a weight matrix (tensor parallelism) and rank 0 owns the
// bias; all save together, then each rank loads a band of *columns* of the
// same matrix, a split unrelated to the save's, and checks it.
//
//   mpirun -np 4 examples/collective_save_load OUT_DIR
#include <cstdio>
#include <vector>

#include "ckpt/format/collective.hpp"

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank = 0, ranks = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &ranks);
  if (argc != 2) {
    if (rank == 0) std::fprintf(stderr, "usage: mpirun -np N %s OUT_DIR\n", argv[0]);
    MPI_Finalize();
    return 2;
  }
  const std::int64_t rows = 64, columns = 48;
  const ckpt::Shape shape = {rows, columns};
  auto value = [&](std::int64_t row, std::int64_t column) { return static_cast<float>(row * columns + column); };

  // This rank's rows [first, last) of "weight"; the bias on rank 0.
  const std::int64_t first = rows * rank / ranks, last = rows * (rank + 1) / ranks;
  std::vector<float> band;
  for (std::int64_t r = first; r < last; ++r) {
    for (std::int64_t c = 0; c < columns; ++c) band.push_back(value(r, c));
  }
  std::vector<float> bias(columns, 0.5f);

  int failed = 0;
  auto report = [&](const char* step, const ckpt::Status& status) {
    if (status.ok()) return true;
    std::fprintf(stderr, "rank %d: %s: %s\n", rank, step, status.error().describe().c_str());
    failed = 1;
    return false;
  };
  auto writer = ckpt::CollectiveWriter::create(argv[1], MPI_COMM_WORLD);
  if (report("create", writer.ok() ? ckpt::Status() : ckpt::Status(writer.error()))) {
    ckpt::Status added = writer->add("weight", ckpt::DType::kFloat, shape, {{first, 0}, {last - first, columns}},
                                     std::as_bytes(std::span(band)));
    if (added.ok() && rank == 0) {
      added = writer->add("bias", ckpt::DType::kFloat, {columns}, {{0}, {columns}}, std::as_bytes(std::span(bias)));
    }
    report("add", added);
    // Collective: called on every rank, even after a failed add.
    report("commit", writer->commit());
  }

  if (!failed) {
    auto reader = ckpt::CollectiveReader::open(argv[1], MPI_COMM_WORLD);
    if (report("open", reader.ok() ? ckpt::Status() : ckpt::Status(reader.error()))) {
      const std::int64_t from = columns * rank / ranks, to = columns * (rank + 1) / ranks;
      std::vector<float> column_band(static_cast<std::size_t>(rows * (to - from)));
      if (report("read", reader->read("weight", {{0, from}, {rows, to - from}}, std::as_writable_bytes(std::span(column_band))))) {
        std::size_t wrong = 0;
        for (std::int64_t r = 0; r < rows; ++r) {
          for (std::int64_t c = from; c < to; ++c) {
            wrong += column_band[static_cast<std::size_t>(r * (to - from) + (c - from))] != value(r, c);
          }
        }
        std::printf("rank %d of %d: saved rows %lld-%lld, loaded columns %lld-%lld: %zu wrong values\n", rank, ranks,
                    static_cast<long long>(first), static_cast<long long>(last - 1), static_cast<long long>(from),
                    static_cast<long long>(to - 1), wrong);
        failed = wrong != 0;
      }
    }
  }
  MPI_Finalize();
  return failed;
}
