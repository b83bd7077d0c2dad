// ckpt-train: trains the tutorial's MLP, saves it as a OneFlow state_dict
// snapshot with its training state beside it, and validates what it wrote.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "ckpt/format/validate.hpp"
#include "ckpt/train/checkpoint.hpp"
#include "ckpt/train/dataset.hpp"
#include "ckpt/train/trainer.hpp"

namespace {

namespace fs = std::filesystem;
using namespace ckpt::train;

constexpr std::string_view kUsage = R"(usage: ckpt-train [options]

Trains the OneFlow tutorial's MLP (784-128-64-10, SGD, CrossEntropyLoss) on an
MNIST-format data set, saves it like flow.save(model.state_dict(), OUT) and
its training state to OUT.train-state (spec/training-state.md), then validates
OUT. Each epoch prints "epoch N, train loss X, train acc Y, test acc Z".

Options:
  --epochs N          train until N epochs are done (default 10)
  --device D          auto, cpu or cuda (default auto: cuda when a GPU is usable)
  --data DIR          MNIST-format IDX files, gzipped or not
                      (default /usr/share/datasets/fashion-mnist)
  --out DIR           where to save the model (default ./mnist_model)
  --overwrite         replace OUT (and OUT.train-state) when they exist
  --save-every-epoch  also save OUT.epoch-N (+ .train-state) after each epoch
  --seed N            initialisation and shuffling seed (default 0)
  --lr X              SGD learning rate (default 0.003)
  --momentum X        SGD momentum (default 0)
  --weight-decay X    SGD weight decay (default 0)
  --batch-size N      (default 128)
  --train-samples N   train on the first N samples only (default all)
  --resume DIR        continue from a snapshot saved by ckpt-train and its
                      DIR.train-state; seed, lr, momentum, weight decay and
                      batch size come from the state
  --eval-only DIR     load the snapshot DIR, print "test acc Z" and exit
  --help              this text

Exit status: 0 success, 1 invalid input (data, snapshot, state), 2 usage or I/O error.
)";

struct Options {
  std::int64_t epochs = 10;
  Device device = Device::kAuto;
  fs::path data = std::string(kDefaultDataDir);
  fs::path out = "mnist_model";
  bool overwrite = false;
  bool save_every_epoch = false;
  TrainConfig config;
  std::optional<std::size_t> train_samples;
  std::optional<fs::path> resume;
  std::optional<fs::path> eval_only;
  bool training_options_given = false;  // any of seed/lr/momentum/weight decay/batch size
};

struct UsageError {
  std::string message;
};

int exit_code(const ckpt::Error& error) {
  const auto family = static_cast<unsigned>(error.code()) / 100;
  return family == 1 || error.code() == ckpt::ErrorCode::kDeviceError ? 2 : 1;
}

int fail(const ckpt::Error& error) {
  std::fprintf(stderr, "ckpt-train: %s\n", error.describe().c_str());
  return exit_code(error);
}

template <class T>
std::optional<T> parse_number(std::string_view text) {
  try {
    std::size_t used = 0;
    const std::string copy(text);
    T value{};
    if constexpr (std::is_floating_point_v<T>) {
      value = static_cast<T>(std::stod(copy, &used));
    } else {
      if (copy.empty() || copy[0] == '-') return std::nullopt;
      value = static_cast<T>(std::stoull(copy, &used));
    }
    if (used != copy.size()) return std::nullopt;
    return value;
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

// Returns an error message, or nothing when `args` parsed.
std::optional<UsageError> parse(const std::vector<std::string_view>& args, Options& options) {
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string_view arg = args[i];
    if (arg == "--overwrite") {
      options.overwrite = true;
      continue;
    }
    if (arg == "--save-every-epoch") {
      options.save_every_epoch = true;
      continue;
    }
    if (i + 1 >= args.size()) return UsageError{fmt::format("unknown option or missing value: {}", arg)};
    const std::string_view value = args[++i];
    const auto bad_value = [&] { return UsageError{fmt::format("{}: invalid value '{}'", arg, value)}; };
    if (arg == "--epochs") {
      const auto number = parse_number<std::uint32_t>(value);
      if (!number) return bad_value();
      options.epochs = *number;
    } else if (arg == "--device") {
      auto device = parse_device(value);
      if (!device.ok()) return UsageError{device.error().message()};
      options.device = *device;
    } else if (arg == "--data") {
      options.data = value;
    } else if (arg == "--out") {
      options.out = value;
    } else if (arg == "--seed") {
      const auto number = parse_number<std::uint64_t>(value);
      if (!number) return bad_value();
      options.config.seed = *number;
      options.training_options_given = true;
    } else if (arg == "--lr" || arg == "--momentum" || arg == "--weight-decay") {
      const auto number = parse_number<float>(value);
      if (!number || *number < 0.0f) return bad_value();
      float& field = arg == "--lr" ? options.config.sgd.learning_rate
                     : arg == "--momentum" ? options.config.sgd.momentum
                                           : options.config.sgd.weight_decay;
      field = *number;
      options.training_options_given = true;
    } else if (arg == "--batch-size") {
      const auto number = parse_number<std::uint32_t>(value);
      if (!number || *number == 0) return bad_value();
      options.config.batch_size = *number;
      options.training_options_given = true;
    } else if (arg == "--train-samples") {
      const auto number = parse_number<std::size_t>(value);
      if (!number || *number == 0) return bad_value();
      options.train_samples = *number;
    } else if (arg == "--resume") {
      options.resume = value;
    } else if (arg == "--eval-only") {
      options.eval_only = value;
    } else {
      return UsageError{fmt::format("unknown option: {}", arg)};
    }
  }
  if (options.resume && options.eval_only) return UsageError{"--resume and --eval-only exclude each other"};
  if (options.resume && options.training_options_given) {
    return UsageError{"--resume takes seed, lr, momentum, weight decay and batch size from the training state"};
  }
  return std::nullopt;
}

ckpt::Status save_run(Trainer& trainer, const fs::path& dir, bool overwrite) {
  CKPT_ASSIGN_OR_RETURN(const Mlp model, trainer.model());
  CKPT_ASSIGN_OR_RETURN(const TrainingState state, trainer.state());
  CKPT_TRY(save_state_dict(model, dir, overwrite));
  return save_training_state(state, model, training_state_path(dir), overwrite);
}

int evaluate_only(const Options& options) {
  auto test = load_mnist(options.data, Split::kTest);
  if (!test.ok()) return fail(test.error());
  auto model = Mlp::create(MlpShape{}, options.config.seed);
  if (!model.ok()) return fail(model.error());
  if (auto loaded = load_state_dict(*options.eval_only, *model); !loaded.ok()) return fail(loaded.error());
  auto backend = make_backend(options.device);
  if (!backend.ok()) return fail(backend.error());
  auto trainer = Trainer::create(std::move(*backend), *model, options.config);
  if (!trainer.ok()) return fail(trainer.error());
  auto accuracy = trainer->evaluate(*test);
  if (!accuracy.ok()) return fail(accuracy.error());
  std::printf("test acc %.4f\n", *accuracy);
  return 0;
}

int train(Options options) {
  auto train_set = load_mnist(options.data, Split::kTrain);
  if (!train_set.ok()) return fail(train_set.error());
  if (options.train_samples) *train_set = train_set->head(*options.train_samples);
  auto test_set = load_mnist(options.data, Split::kTest);
  if (!test_set.ok()) return fail(test_set.error());

  auto model = Mlp::create(MlpShape{}, options.config.seed);
  if (!model.ok()) return fail(model.error());
  std::optional<TrainingState> resumed;
  if (options.resume) {
    if (auto loaded = load_state_dict(*options.resume, *model); !loaded.ok()) return fail(loaded.error());
    auto state = load_training_state(training_state_path(*options.resume), *model);
    if (!state.ok()) return fail(state.error());
    options.config.batch_size = state->batch_size;
    resumed = std::move(*state);
  }

  auto backend = make_backend(options.device);
  if (!backend.ok()) return fail(backend.error());
  std::printf("device: %s\n", (*backend)->description().c_str());
  auto trainer = Trainer::create(std::move(*backend), *model, options.config);
  if (!trainer.ok()) return fail(trainer.error());
  if (resumed) {
    if (auto restored = trainer->restore(*resumed); !restored.ok()) return fail(restored.error());
    std::printf("resumed after epoch %lld\n", static_cast<long long>(trainer->epochs_done()));
  }

  while (trainer->epochs_done() < options.epochs) {
    const auto start = std::chrono::steady_clock::now();
    auto report = trainer->train_epoch(*train_set, *test_set);
    if (!report.ok()) return fail(report.error());
    const std::chrono::duration<double> seconds = std::chrono::steady_clock::now() - start;
    std::printf("epoch %lld, train loss %.4f, train acc %.3f, test acc %.3f\n", static_cast<long long>(report->epoch),
                report->train_loss, report->train_accuracy, report->test_accuracy);
    std::fflush(stdout);
    std::fprintf(stderr, "epoch %lld took %.3f s\n", static_cast<long long>(report->epoch), seconds.count());
    if (options.save_every_epoch) {
      const fs::path dir = fmt::format("{}.epoch-{}", options.out.string(), report->epoch);
      if (auto saved = save_run(*trainer, dir, options.overwrite); !saved.ok()) return fail(saved.error());
    }
  }

  if (auto saved = save_run(*trainer, options.out, options.overwrite); !saved.ok()) return fail(saved.error());
  const ckpt::ValidationReport report = ckpt::validate_snapshot(options.out);
  for (const ckpt::Issue& issue : report.issues) {
    std::fprintf(stderr, "ckpt-train: %s %s: %s\n", ckpt::code_id(issue.code).c_str(), issue.variable.c_str(),
                 issue.message.c_str());
  }
  if (!report.valid()) {
    std::fprintf(stderr, "ckpt-train: the saved snapshot %s does not validate\n", options.out.c_str());
    return 1;
  }
  std::printf("saved %s (%zu variables, valid) and %s\n", options.out.c_str(), report.variables.size(),
              training_state_path(options.out).c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string_view> args(argv + 1, argv + argc);
  for (const std::string_view arg : args) {
    if (arg == "--help" || arg == "-h") {
      std::fputs(kUsage.data(), stdout);
      return 0;
    }
  }
  Options options;
  if (const auto error = parse(args, options)) {
    std::fprintf(stderr, "ckpt-train: %s\n\n%s", error->message.c_str(), kUsage.data());
    return 2;
  }
  return options.eval_only ? evaluate_only(options) : train(std::move(options));
}
