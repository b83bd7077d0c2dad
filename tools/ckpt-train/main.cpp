// ckpt-train: trains the tutorial's MLP, saves it as a OneFlow state_dict
// snapshot with its training state beside it, and validates what it wrote.
#include <chrono>
#include <ctime>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "cli.hpp"
#include "ckpt/format/snapshot.hpp"
#include "ckpt/format/validate.hpp"
#include "ckpt/train/checkpoint.hpp"
#include "ckpt/train/dataset.hpp"
#include "ckpt/train/order.hpp"
#include "ckpt/train/trainer.hpp"

namespace {

namespace fs = std::filesystem;
using namespace ckpt::train;

constexpr std::string_view kDescription = R"(Trains the OneFlow tutorial's MLP (784-128-64-10, SGD, CrossEntropyLoss) on an
MNIST-format data set, saves it like flow.save(model.state_dict(), OUT) and its
training state to OUT.train-state (spec/training-state.md), then validates OUT.
Each epoch prints "epoch N, train loss X, train acc Y, test acc Z".)";

struct Options {
  std::int64_t epochs = 10;
  std::string device = "auto";
  fs::path data = std::string(kDefaultDataDir);
  fs::path out = "mnist_model";
  bool force = false;
  bool save_every_epoch = false;
  TrainConfig config;
  std::optional<std::size_t> train_samples;
  std::optional<fs::path> resume;
  std::optional<fs::path> init;
  std::optional<fs::path> order;
  bool no_shuffle = false;
  std::optional<fs::path> eval_only;
  bool json = false;
  bool quiet = false;
};

// Training options given on the command line, each checked against a
// resumed state: equal is fine, different is refused naming both values.
struct GivenOptions {
  CLI::Option* seed;
  CLI::Option* lr;
  CLI::Option* momentum;
  CLI::Option* weight_decay;
  CLI::Option* batch_size;
};

std::optional<std::string> conflict_with_state(const GivenOptions& given, const Options& options,
                                               const TrainingState& state) {
  auto differs = [](CLI::Option* option, auto asked, auto stored) -> std::optional<std::string> {
    if (option->count() == 0 || asked == stored) return std::nullopt;
    return fmt::format("{} {} conflicts with the training state's {}; leave it out to continue with the stored value",
                       option->get_name(), asked, stored);
  };
  for (auto conflict : {differs(given.seed, options.config.seed, state.seed),
                        differs(given.batch_size, options.config.batch_size, state.batch_size)}) {
    if (conflict) return conflict;
  }
  for (auto conflict : {differs(given.lr, options.config.sgd.learning_rate, state.sgd.learning_rate),
                        differs(given.momentum, options.config.sgd.momentum, state.sgd.momentum),
                        differs(given.weight_decay, options.config.sgd.weight_decay, state.sgd.weight_decay)}) {
    if (conflict) return conflict;
  }
  return std::nullopt;
}

// Refuses, before any training, outputs that exist when --force is absent.
ckpt::Status check_outputs(const Options& options, std::int64_t first_epoch) {
  if (options.force) return {};
  std::vector<fs::path> outputs = {options.out};
  if (options.save_every_epoch) {
    for (std::int64_t epoch = first_epoch; epoch <= options.epochs; ++epoch) {
      outputs.emplace_back(fmt::format("{}.epoch-{}", options.out.string(), epoch));
    }
  }
  for (const fs::path& dir : outputs) {
    for (const fs::path& path : {dir, training_state_path(dir)}) {
      std::error_code ec;
      if (fs::symlink_status(path, ec).type() != fs::file_type::not_found) {
        return ckpt::Error(ckpt::ErrorCode::kDestinationExists, "already exists; not replaced unless asked to overwrite")
            .in_file(path.string());
      }
    }
  }
  return {};
}

ckpt::Status save_run(Trainer& trainer, const fs::path& dir, bool overwrite) {
  CKPT_ASSIGN_OR_RETURN(const Mlp model, trainer.model());
  CKPT_ASSIGN_OR_RETURN(const TrainingState state, trainer.state());
  CKPT_TRY(save_state_dict(model, dir, overwrite));
  return save_training_state(state, model, training_state_path(dir), overwrite);
}

int evaluate_only(const ckpt::cli::Tool& tool, const Options& options, Device device) {
  auto fail = [&](const ckpt::Error& error) { return tool.fail(error); };
  auto test = load_mnist(options.data, Split::kTest);
  if (!test.ok()) return fail(test.error());
  auto model = Mlp::create(MlpShape{}, options.config.seed);
  if (!model.ok()) return fail(model.error());
  if (auto loaded = load_state_dict(*options.eval_only, *model); !loaded.ok()) return fail(loaded.error());
  auto backend = make_backend(device);
  if (!backend.ok()) return fail(backend.error());
  auto trainer = Trainer::create(std::move(*backend), *model, options.config);
  if (!trainer.ok()) return fail(trainer.error());
  auto accuracy = trainer->evaluate(*test);
  if (!accuracy.ok()) return fail(accuracy.error());
  if (options.json) {
    nlohmann::json out = ckpt::cli::envelope("ckpt-train", options.eval_only->string());
    out["format"] = "oneflow";
    out["test_accuracy"] = *accuracy;
    ckpt::cli::print_json(out);
  } else {
    fmt::print("test acc {:.4f}\n", *accuracy);
  }
  return ckpt::cli::kExitOk;
}

int train(const ckpt::cli::Tool& tool, Options options, Device device, const GivenOptions& given) {
  nlohmann::json out = ckpt::cli::envelope("ckpt-train", options.out.string());
  auto fail = [&](const ckpt::Error& error) { return tool.fail(error, options.json ? &out : nullptr); };
  // With --json, stdout holds the document only; progress goes to stderr.
  std::FILE* progress = options.quiet ? nullptr : options.json ? stderr : stdout;
  auto model = Mlp::create(MlpShape{}, options.config.seed);
  if (!model.ok()) return fail(model.error());
  if (options.init) {
    if (auto loaded = load_initial_weights(*options.init, *model); !loaded.ok()) return fail(loaded.error());
  }
  std::optional<TrainingState> resumed;
  if (options.resume) {
    if (auto loaded = load_state_dict(*options.resume, *model); !loaded.ok()) return fail(loaded.error());
    auto state = load_training_state(training_state_path(*options.resume), *model);
    if (!state.ok()) return fail(state.error());
    if (auto conflict = conflict_with_state(given, options, *state)) return tool.usage_error(*conflict);
    options.config.batch_size = state->batch_size;
    resumed = std::move(*state);
  }
  if (auto free = check_outputs(options, resumed ? resumed->epochs_done + 1 : 1); !free.ok()) {
    return fail(free.error());
  }
  auto train_set = load_mnist(options.data, Split::kTrain);
  if (!train_set.ok()) return fail(train_set.error());
  if (options.train_samples) *train_set = train_set->head(*options.train_samples);
  auto test_set = load_mnist(options.data, Split::kTest);
  if (!test_set.ok()) return fail(test_set.error());
  std::optional<EpochOrder> order;
  if (options.order) {
    auto loaded = load_epoch_order(*options.order, train_set->size());
    if (!loaded.ok()) return fail(loaded.error());
    order = std::move(*loaded);
  } else if (options.no_shuffle) {
    order = sequential_order(static_cast<std::size_t>(options.epochs), train_set->size());
  }
  if (order && order->size() < static_cast<std::size_t>(options.epochs)) {
    return fail(ckpt::Error(ckpt::ErrorCode::kDatasetMismatch,
                            fmt::format("batch order: {} epochs of sample indices, training runs to epoch {}",
                                        order->size(), options.epochs))
                    .in_file(options.order->string()));
  }

  auto backend = make_backend(device);
  if (!backend.ok()) return fail(backend.error());
  if (progress) fmt::print(progress, "device: {}\n", (*backend)->description());
  auto trainer = Trainer::create(std::move(*backend), *model, options.config);
  if (!trainer.ok()) return fail(trainer.error());
  if (resumed) {
    if (auto restored = trainer->restore(*resumed); !restored.ok()) return fail(restored.error());
    if (progress) fmt::print(progress, "resumed after epoch {}\n", trainer->epochs_done());
  }

  nlohmann::json epochs = nlohmann::json::array();
  while (trainer->epochs_done() < options.epochs) {
    const auto start = std::chrono::steady_clock::now();
    const std::clock_t cpu_start = std::clock();  // process CPU time: what the epoch costs on a shared machine
    auto report = order ? trainer->train_epoch(*train_set, *test_set, (*order)[static_cast<std::size_t>(trainer->epochs_done())])
                        : trainer->train_epoch(*train_set, *test_set);
    if (!report.ok()) return fail(report.error());
    const std::chrono::duration<double> seconds = std::chrono::steady_clock::now() - start;
    epochs.push_back({{"epoch", report->epoch},
                      {"train_loss", report->train_loss},
                      {"train_accuracy", report->train_accuracy},
                      {"test_accuracy", report->test_accuracy}});
    if (progress) {
      fmt::print(progress, "epoch {}, train loss {:.4f}, train acc {:.3f}, test acc {:.3f}\n", report->epoch,
                 report->train_loss, report->train_accuracy, report->test_accuracy);
      std::fflush(progress);
      const double cpu_seconds = static_cast<double>(std::clock() - cpu_start) / CLOCKS_PER_SEC;
      fmt::print(stderr, "epoch {} took {:.3f} s ({:.3f} s CPU)\n", report->epoch, seconds.count(), cpu_seconds);
    }
    if (options.save_every_epoch) {
      const fs::path dir = fmt::format("{}.epoch-{}", options.out.string(), report->epoch);
      if (auto saved = save_run(*trainer, dir, options.force); !saved.ok()) return fail(saved.error());
    }
  }

  if (auto saved = save_run(*trainer, options.out, options.force); !saved.ok()) return fail(saved.error());
  const ckpt::ValidationReport report = ckpt::validate_snapshot(options.out);
  out["format"] = "oneflow";
  if (!report.layout.empty()) out["layout"] = report.layout;
  out["valid"] = report.valid();
  out["epochs"] = std::move(epochs);
  out["training_state"] = training_state_path(options.out).string();
  for (const auto& variable : report.variables) {
    out["tensors"].push_back(ckpt::cli::tensor_json(variable.name, variable.meta ? &*variable.meta : nullptr,
                                                    variable.byte_size, "oneflow"));
  }
  for (const ckpt::Issue& issue : report.issues) {
    out["issues"].push_back(ckpt::cli::issue_json(issue));
    fmt::print(stderr, "{}: {} {}: {}\n", tool.name(), ckpt::code_id(issue.code), ckpt::printable(issue.variable),
               ckpt::printable(issue.message));
  }
  if (options.json) ckpt::cli::print_json(out);
  if (!report.valid()) {
    fmt::print(stderr, "{}: the saved snapshot {} does not validate\n", tool.name(), ckpt::printable(options.out.string()));
    return ckpt::cli::kExitInvalid;
  }
  if (!options.json) {
    fmt::print("saved {} ({} variables, valid) and {}\n", ckpt::printable(options.out.string()),
               report.variables.size(), ckpt::printable(training_state_path(options.out).string()));
  }
  return ckpt::cli::kExitOk;
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  ckpt::cli::Tool tool("ckpt-train", std::string(kDescription));
  auto& app = tool.app();
  auto positive = CLI::PositiveNumber;
  app.add_option("--epochs", options.epochs, "train until N epochs are done (default 10)")
      ->type_name("N")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--device", options.device, "auto, cpu or cuda (default auto: cuda when a GPU is usable)")
      ->type_name("D")
      ->check(CLI::IsMember({"auto", "cpu", "cuda"}));
  app.add_option("--data", options.data,
                 "MNIST-format IDX files, gzipped or not (default /usr/share/datasets/fashion-mnist)")
      ->type_name("DIR");
  app.add_option("--out", options.out, "where to save the model (default ./mnist_model)")->type_name("DIR");
  app.add_flag("--force,--overwrite", options.force, "replace OUT (and OUT.train-state) when they exist");
  app.add_flag("--save-every-epoch", options.save_every_epoch,
               "also save OUT.epoch-N (+ .train-state) after each epoch");
  GivenOptions given{};
  given.seed = app.add_option("--seed", options.config.seed, "initialisation and shuffling seed (default 0)")
                   ->type_name("N");
  given.lr = app.add_option("--lr", options.config.sgd.learning_rate, "SGD learning rate (default 0.003)")
                 ->type_name("X")
                 ->check(CLI::NonNegativeNumber);
  given.momentum = app.add_option("--momentum", options.config.sgd.momentum, "SGD momentum (default 0)")
                       ->type_name("X")
                       ->check(CLI::NonNegativeNumber);
  given.weight_decay =
      app.add_option("--weight-decay", options.config.sgd.weight_decay, "SGD weight decay (default 0)")
          ->type_name("X")
          ->check(CLI::NonNegativeNumber);
  given.batch_size =
      app.add_option("--batch-size", options.config.batch_size, "(default 128)")->type_name("N")->check(positive);
  app.add_option("--train-samples", options.train_samples, "train on the first N samples only (default all)")
      ->type_name("N")
      ->check(positive);
  auto* resume = app.add_option("--resume", options.resume,
                                "continue from a snapshot saved by ckpt-train and its DIR.train-state; seed, lr, "
                                "momentum, weight decay and batch size come from the state (giving one is allowed "
                                "when it equals the stored value)")
                     ->type_name("DIR");
  auto* init = app.add_option("--init", options.init,
                 "start from these weights instead of the seed's: a checkpoint of any readable format holding "
                 "exactly l1.weight, l1.bias, ..., l3.bias as float32 of the model's shapes")
      ->type_name("PATH")
      ->excludes(resume);
  auto* no_shuffle = app.add_flag("--no-shuffle", options.no_shuffle,
                                  "take the training samples in file order every epoch (batches 0-127, 128-255, ...)");
  app.add_option("--order", options.order,
                 "take each epoch's samples in the order FILE gives: one integer tensor [epochs, samples] of "
                 "sample indices, row e for epoch e+1 (an .npy; spec/training-state.md)")
      ->type_name("FILE")
      ->excludes(no_shuffle);
  app.add_option("--eval-only", options.eval_only, "load the snapshot DIR, print \"test acc Z\" and exit")
      ->type_name("DIR")
      ->excludes(resume)
      ->excludes(init);
  app.add_flag("--json", options.json,
               "print one JSON document at the end (spec/schema/ckpt-train.schema.json): the envelope for OUT "
               "with \"valid\", \"epochs\" and \"training_state\"; progress lines go to stderr");
  app.add_flag("-q,--quiet", options.quiet, "no progress lines");
  app.footer("Exit status: 0 success, 1 invalid input (data, snapshot, state), 2 usage, I/O or device error.");
  if (auto stop = tool.parse(argc, argv)) return *stop;
  auto device = parse_device(options.device);
  if (!device.ok()) return tool.usage_error(device.error().message());
  return options.eval_only ? evaluate_only(tool, options, *device) : train(tool, std::move(options), *device, given);
}
