// Writes a small OneFlow snapshot with libformat, validates it, and reads a
// variable back three ways. Usage: save_and_load DIR
#include <cstdio>
#include <vector>

#include <fmt/format.h>

#include "ckpt/format/snapshot.hpp"
#include "ckpt/format/validate.hpp"
#include "ckpt/format/writer.hpp"

namespace {

ckpt::Status save(const std::filesystem::path& dir) {
  // A Linear(3, 2): weight [out, in] and bias [out], as OneFlow stores them.
  std::vector<float> weight = {0.1f, 0.2f, 0.3f, 0.4f, 0.5f, 0.6f};
  std::vector<float> bias = {-1.0f, 1.0f};
  CKPT_ASSIGN_OR_RETURN(auto weight_meta, ckpt::VariableMeta::make(ckpt::DType::kFloat, {2, 3}));
  CKPT_ASSIGN_OR_RETURN(auto bias_meta, ckpt::VariableMeta::make(ckpt::DType::kFloat, {2}));
  CKPT_ASSIGN_OR_RETURN(auto writer, ckpt::SnapshotWriter::create(dir));
  CKPT_TRY(writer.add("linear.weight", weight_meta, std::as_bytes(std::span(weight))));
  CKPT_TRY(writer.add("linear.bias", bias_meta, std::as_bytes(std::span(bias))));
  return writer.commit();
}

ckpt::Status load(const std::filesystem::path& dir) {
  CKPT_ASSIGN_OR_RETURN(auto snapshot, ckpt::Snapshot::open(dir));
  for (const auto& variable : snapshot.variables()) {
    fmt::print("{} {} {}\n", variable.name, ckpt::dtype_name(variable.meta->dtype()),
               ckpt::shape_to_string(variable.meta->shape()));
  }
  std::vector<float> bias(2);
  CKPT_TRY(snapshot.read("linear.bias", std::as_writable_bytes(std::span(bias))));
  CKPT_ASSIGN_OR_RETURN(auto mapped, snapshot.map("linear.weight"));
  const auto* weight = reinterpret_cast<const float*>(mapped.bytes().data());
  fmt::print("bias = [{}, {}], weight[1][2] = {}\n", bias[0], bias[1], weight[5]);
  return {};
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    fmt::print(stderr, "usage: save_and_load DIR\n");
    return 2;
  }
  std::filesystem::path dir = argv[1];
  if (auto status = save(dir); !status.ok()) {
    fmt::print(stderr, "save failed: {}\n", status.error().describe());
    return 1;
  }
  auto report = ckpt::validate_snapshot(dir);
  fmt::print("{}: {} with {} variables, {}\n", dir.string(), report.layout,
             report.variables.size(), report.valid() ? "valid" : "INVALID");
  if (auto status = load(dir); !status.ok()) {
    fmt::print(stderr, "load failed: {}\n", status.error().describe());
    return 1;
  }
  return report.valid() ? 0 : 1;
}
