// Independent tasks run on a few threads at once, with a cap on the buffer
// bytes they hold together: what conversion, statistics and comparison use
// to read, cast and write several tensors at a time in bounded memory.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>

#include "ckpt/format/error.hpp"

namespace ckpt {

// The number of cores this process may run on (at least 1): the default
// --jobs of the tools.
unsigned available_cores();

struct ParallelOptions {
  unsigned jobs = 1;  // threads, the caller's included; 0 counts as 1
  // The most buffer bytes the running tasks hold together (task_bytes of
  // each); a task that alone needs more than this runs with no other.
  std::uint64_t byte_budget = std::uint64_t{256} << 20;
};

// Runs task(0) ... task(count - 1). Tasks start in index order; a task
// starts only while the task_bytes of those running plus its own fit the
// budget (or nothing else runs). After a failure no further task starts, and
// the error returned is that of the lowest failing index, so the outcome is
// the same for every number of jobs when tasks are deterministic.
Status run_tasks(std::size_t count, const ParallelOptions& options,
                 const std::function<std::uint64_t(std::size_t index)>& task_bytes,
                 const std::function<Status(std::size_t index)>& task);

}  // namespace ckpt
