// The OneFlow tutorial's flow in C++: train the MLP a little, save it like
// flow.save(model.state_dict(), DIR), load it into a fresh model like
// model.load_state_dict(flow.load(DIR)), and evaluate both.
// Usage: tutorial_flow DIR [MNIST_DIR]
#include <fmt/format.h>

#include "ckpt/train/backend.hpp"
#include "ckpt/train/checkpoint.hpp"
#include "ckpt/train/dataset.hpp"
#include "ckpt/train/model.hpp"
#include "ckpt/train/trainer.hpp"

namespace {

using namespace ckpt::train;

ckpt::Status run(const std::filesystem::path& dir, const std::filesystem::path& data) {
  CKPT_ASSIGN_OR_RETURN(Dataset train, load_mnist(data, Split::kTrain));
  CKPT_ASSIGN_OR_RETURN(Dataset test, load_mnist(data, Split::kTest));
  train = train.head(12000);  // "a little": one epoch on a fifth of the set

  CKPT_ASSIGN_OR_RETURN(Mlp model, Mlp::create(MlpShape{}, /*seed=*/0));
  TrainConfig config;
  config.epochs = 1;
  config.sgd.learning_rate = 0.2f;
  CKPT_ASSIGN_OR_RETURN(Trainer trainer, Trainer::create(make_cpu_backend(), model, config));
  CKPT_ASSIGN_OR_RETURN(EpochReport report, trainer.train_epoch(train, test));
  fmt::print("epoch {}, train loss {:.4f}, train acc {:.3f}, test acc {:.3f}\n", report.epoch, report.train_loss,
             report.train_accuracy, report.test_accuracy);

  CKPT_ASSIGN_OR_RETURN(Mlp trained, trainer.model());
  CKPT_TRY(save_state_dict(trained, dir, /*overwrite=*/false));
  fmt::print("Saved OneFlow Model to {}\n", dir.string());

  // A fresh, differently initialised model takes the saved parameters.
  CKPT_ASSIGN_OR_RETURN(Mlp fresh, Mlp::create(MlpShape{}, /*seed=*/1));
  CKPT_TRY(load_state_dict(dir, fresh));
  CKPT_ASSIGN_OR_RETURN(Trainer evaluator, Trainer::create(make_cpu_backend(), fresh, config));
  CKPT_ASSIGN_OR_RETURN(double loaded_accuracy, evaluator.evaluate(test));
  fmt::print("loaded model: test acc {:.4f} (trained model: {:.4f})\n", loaded_accuracy, report.test_accuracy);
  if (loaded_accuracy != report.test_accuracy) {
    return ckpt::Error(ckpt::ErrorCode::kStateDictMismatch, "the loaded model evaluates differently");
  }
  return {};
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || argc > 3) {
    fmt::print(stderr, "usage: tutorial_flow DIR [MNIST_DIR]\n");
    return 2;
  }
  auto status = run(argv[1], argc == 3 ? argv[2] : "/usr/share/datasets/fashion-mnist");
  if (!status.ok()) {
    fmt::print(stderr, "tutorial_flow: {}\n", status.error().describe());
    return 1;
  }
  return 0;
}
