// Whole-module pickles (flow.save(model), torch.save(model)): a class off the
// allow-list becomes an inert stub only with an nn.Module's state; every
// other use of it is still refused, and nothing is ever imported or called.
#include "ckpt/format/pickle.hpp"

#include <doctest/doctest.h>

#include "test_support.hpp"

namespace pickle = ckpt::pickle;
using ckpt::ErrorCode;
using namespace std::string_literals;

namespace {

std::span<const std::byte> bytes_of(std::string_view text) { return std::as_bytes(std::span(text.data(), text.size())); }

// A pickle of __main__.Net whose state is a Module's: l1 (a torch.nn.Linear stub
// with a OneFlow tensor weight) under _modules, a buffer "step" and a parameter
// "scale" under its own groups; `extra` is added to Net's state.
std::string module_pickle(std::string_view extra = "") {
  auto str = [](std::string_view s) { return "\x8c"s + static_cast<char>(s.size()) + std::string(s); };
  auto tensor = [&](std::string_view path) { return "coneflow\nTensor\n)\x81}" + str("path") + str(path) + "sb"; };
  auto groups = [&](std::string parameters, std::string buffers, std::string modules) {
    return str("_parameters") + "ccollections\nOrderedDict\n)R" + parameters + str("_buffers") +
           "ccollections\nOrderedDict\n)R" + buffers + str("_modules") + "ccollections\nOrderedDict\n)R" + modules;
  };
  std::string linear = "coneflow.nn.modules.linear\nLinear\n)\x81}(" + str("training") + "\x88" +
                       groups("(" + str("weight") + tensor("tensor_1") + str("bias") + "Nu", "", "") + "ub";
  return "\x80\x04" "c__main__\nNet\n)\x81}(" +
         groups(str("scale") + tensor("tensor_2") + "s", str("step") + tensor("tensor_3") + "s", str("l1") + linear + "s") +
         std::string(extra) + "ub.";
}

ErrorCode refusal(std::string_view stream, pickle::ReadOptions options = {}) {
  auto result = pickle::read(bytes_of(stream), options, "model.pkl");
  REQUIRE_FALSE(result.ok());
  return result.error().code();
}

}  // namespace

TEST_CASE("a module's pickle becomes stubs whose tensors are named as state_dict() names them") {
  std::string stream = module_pickle();
  auto document = pickle::read(bytes_of(stream), {}, "model.pkl");
  REQUIRE(document.ok());
  const pickle::Value* net = document->root();
  REQUIRE(net->kind == pickle::Kind::kStub);
  CHECK(net->cls->text == "__main__");
  CHECK(net->cls->name == "Net");
  auto named = pickle::named_tensors(*net, "model.pkl");
  REQUIRE(named.ok());
  std::vector<std::string> names;
  for (const auto& tensor : *named) names.push_back(tensor.name);
  CHECK(names == std::vector<std::string>{"l1.weight", "scale", "step"});
  auto stubs = pickle::module_stubs(*net);
  REQUIRE(stubs.size() == 2);
  CHECK(stubs[0].name == "");
  CHECK(stubs[0].node == net);
  CHECK(stubs[1].name == "l1");
  CHECK(stubs[1].node->cls->text == "oneflow.nn.modules.linear");

  // Copied for writing with new tensors (their paths say which name each
  // replaced): a stub becomes the state_dict its tensors make.
  pickle::Document copy_document;
  const pickle::Value* tensor_class = copy_document.global("oneflow", "Tensor");
  auto copy = pickle::copy_replacing_tensors(
      *net, copy_document,
      [&](const std::string& name) -> ckpt::Result<const pickle::Value*> {
        pickle::Value* state = copy_document.dict();
        state->entries.emplace_back(copy_document.string("path"), copy_document.string("new_" + name));
        pickle::Value* tensor = copy_document.make(pickle::Kind::kOneflowTensor);
        tensor->cls = tensor_class;
        tensor->state = state;
        return tensor;
      },
      "model.pkl");
  REQUIRE(copy.ok());
  REQUIRE((*copy)->kind == pickle::Kind::kDict);
  CHECK((*copy)->ordered);
  std::vector<std::string> keys;
  for (const auto& [key, tensor] : (*copy)->entries) {
    keys.push_back(key->text);
    CHECK(tensor->oneflow_path() == "new_" + key->text);
  }
  CHECK(keys == std::vector<std::string>{"scale", "step", "l1.weight"});  // state_dict()'s order
}

TEST_CASE("a class off the list is refused in every use but a module's state") {
  // A non-module state, a class used as a value, an object never built, arguments to NEWOBJ, a call.
  CHECK(refusal("\x80\x04" "c__main__\nNet\n)\x81}b.") == ErrorCode::kPickleForbiddenGlobal);
  CHECK(refusal("\x80\x04" "c__main__\nNet\n)\x81" "Kxb.") == ErrorCode::kPickleForbiddenGlobal);
  CHECK(refusal("\x80\x04" "c__main__\nNet\n.") == ErrorCode::kPickleForbiddenGlobal);
  CHECK(refusal("\x80\x04]c__main__\nNet\na.") == ErrorCode::kPickleForbiddenGlobal);
  CHECK(refusal("\x80\x04" "c__main__\nNet\n)\x81.") == ErrorCode::kPickleForbiddenGlobal);
  CHECK(refusal("\x80\x04" "c__main__\nNet\nK\x01\x85\x81.") == ErrorCode::kPickleForbiddenGlobal);
  CHECK(refusal("\x80\x04" "cposix\nsystem\n)R.") == ErrorCode::kPickleForbiddenGlobal);
  // Built twice, or given an nn.Module's state with one group missing.
  CHECK(refusal(module_pickle().substr(0, module_pickle().size() - 1) + "}b.") == ErrorCode::kPickleForbiddenGlobal);
  std::string no_modules = module_pickle();
  no_modules.replace(no_modules.find("_modules"), 8, "_modulez");
  CHECK(refusal(no_modules) == ErrorCode::kPickleForbiddenGlobal);
  // An allowed builder may not take a stub class as its argument.
  CHECK(refusal("\x80\x04" "cbuiltins\nset\nc__main__\nNet\n\x85R.") == ErrorCode::kPickleForbiddenGlobal);
  // A module attribute may hold any data, but an off-list class there is still refused.
  CHECK(refusal(module_pickle("\x8c\x03" "act" "cos\nsystem\n")) == ErrorCode::kPickleForbiddenGlobal);
}

TEST_CASE("without the stub rule, the class is refused at once") {
  pickle::ReadOptions strict;
  strict.policy.stub_modules = false;
  std::string stream = module_pickle();
  auto result = pickle::read(bytes_of(stream), strict, "model.pkl");
  REQUIRE_FALSE(result.ok());
  CHECK(result.error().code() == ErrorCode::kPickleForbiddenGlobal);
  CHECK(result.error().message().find("'__main__.Net'") != std::string::npos);
}
