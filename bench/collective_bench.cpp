// Throughput of the multi-rank save and load (spec/collective.md):
//   mpirun -np N collective_bench OUT_DIR TOTAL_MIB TENSORS
// TENSORS float32 tensors of [rows, 1024] holding TOTAL_MIB in all, each
// split by rows over the ranks. Times (after a barrier, until the last rank
// is done) the collective save with its fsyncs and rename, then a collective
// load of the same set in which every rank reads its band of rows of every
// tensor (the save's split), then one in which it reads a band of *columns*
// (resharded: every rank reads a run of every row from every file).
// Prints one CSV line on rank 0: ranks,bytes,tensors,save_s,load_rows_s,load_columns_s.
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "ckpt/format/collective.hpp"

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank = 0, ranks = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &ranks);
  if (argc != 4) {
    if (rank == 0) std::fprintf(stderr, "usage: mpirun -np N %s OUT_DIR TOTAL_MIB TENSORS\n", argv[0]);
    MPI_Finalize();
    return 2;
  }
  const std::string out = argv[1];
  const std::int64_t total_mib = std::atoll(argv[2]), tensors = std::atoll(argv[3]);
  const std::int64_t columns = 1024;
  const std::int64_t rows = total_mib * (1 << 20) / 4 / columns / tensors;
  const ckpt::Shape shape = {rows, columns};
  const std::int64_t first = rows * rank / ranks, last = rows * (rank + 1) / ranks;
  std::vector<std::vector<float>> bands(static_cast<std::size_t>(tensors));
  for (std::int64_t t = 0; t < tensors; ++t) {
    bands[static_cast<std::size_t>(t)].assign(static_cast<std::size_t>((last - first) * columns),
                                              static_cast<float>(t + rank));
  }
  auto check = [&](const ckpt::Status& status) {
    if (status.ok()) return;
    std::fprintf(stderr, "rank %d: %s\n", rank, status.error().describe().c_str());
    MPI_Abort(MPI_COMM_WORLD, 1);
  };

  MPI_Barrier(MPI_COMM_WORLD);
  const double save_start = MPI_Wtime();
  auto writer = ckpt::CollectiveWriter::create(out, MPI_COMM_WORLD);
  check(writer.ok() ? ckpt::Status() : ckpt::Status(writer.error()));
  for (std::int64_t t = 0; t < tensors; ++t) {
    check(writer->add(fmt::format("layer{}.weight", t), ckpt::DType::kFloat, shape, {{first, 0}, {last - first, columns}},
                      std::as_bytes(std::span(bands[static_cast<std::size_t>(t)]))));
  }
  check(writer->commit());
  MPI_Barrier(MPI_COMM_WORLD);
  const double save_seconds = MPI_Wtime() - save_start;

  // The load of `box(t)` of every tensor, opening included.
  auto timed_load = [&](const ckpt::TensorBox& box, std::vector<float>& buffer) {
    MPI_Barrier(MPI_COMM_WORLD);
    const double start = MPI_Wtime();
    auto reader = ckpt::CollectiveReader::open(out, MPI_COMM_WORLD);
    check(reader.ok() ? ckpt::Status() : ckpt::Status(reader.error()));
    for (std::int64_t t = 0; t < tensors; ++t) {
      check(reader->read(fmt::format("layer{}.weight", t), box, std::as_writable_bytes(std::span(buffer))));
    }
    MPI_Barrier(MPI_COMM_WORLD);
    return MPI_Wtime() - start;
  };
  std::vector<float> row_band(static_cast<std::size_t>((last - first) * columns));
  const double rows_seconds = timed_load({{first, 0}, {last - first, columns}}, row_band);
  const std::int64_t from = columns * rank / ranks, to = columns * (rank + 1) / ranks;
  std::vector<float> column_band(static_cast<std::size_t>(rows * (to - from)));
  const double columns_seconds = timed_load({{0, from}, {rows, to - from}}, column_band);
  if (rank == 0) {
    std::printf("%d,%lld,%lld,%.4f,%.4f,%.4f\n", ranks, static_cast<long long>(rows * columns * 4 * tensors),
                static_cast<long long>(tensors), save_seconds, rows_seconds, columns_seconds);
  }
  MPI_Finalize();
  return 0;
}
