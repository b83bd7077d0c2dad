// The pickle policy (PicklePolicy): globals the caller allows, or every
// unknown one, become inert stubs (class, arguments, items, state as data);
// numpy scalars and arrays are read in any flavor once allowed. Defaults stay
// strict, instance and extension opcodes stay refused, and a stub writes back
// as the same opcodes. Real files from torch: tests/interop/test_pickle_policy.py.
#include "ckpt/format/pickle.hpp"

#include <cstring>

#include <doctest/doctest.h>

#include "test_support.hpp"

namespace pickle = ckpt::pickle;
using ckpt::ErrorCode;
using namespace std::string_literals;

namespace {

std::span<const std::byte> bytes_of(std::string_view text) { return std::as_bytes(std::span(text.data(), text.size())); }

std::string str(std::string_view s) {
  std::string out = "X";
  auto size = static_cast<std::uint32_t>(s.size());
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((size >> (8 * i)) & 0xFF));
  return out + std::string(s);
}

// {'out': pathlib.PosixPath('/', 'tmp')}, as pickle.py writes it (protocol 2).
const std::string kPosixPath = "\x80\x02}q\x00"s + str("out") + "q\x01" "cpathlib\nPosixPath\nq\x02" + str("/") + "q\x03" +
                               str("tmp") + "q\x04\x86q\x05Rq\x06s.";

// argparse.Namespace(lr=0.5) under "args": NEWOBJ () then BUILD {'lr': 0.5}.
const std::string kNamespace = "\x80\x02}(" + str("args") + "cargparse\nNamespace\n)\x81}" + str("lr") +
                               "G?\xe0\x00\x00\x00\x00\x00\x00sbu."s;

// numpy.core.multiarray.scalar(numpy.dtype(code), raw) with protocol-3 bytes.
std::string numpy_scalar(std::string_view code, std::string_view raw, std::string_view order = "<") {
  std::string dtype = "cnumpy\ndtype\n" + str(code) + "\x89\x88\x87R(K\x03" + str(order) +
                      "NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"s;
  return "\x80\x03" "cnumpy.core.multiarray\nscalar\n" + dtype + "C"s + static_cast<char>(raw.size()) + std::string(raw) +
         "\x86R.";
}

std::string raw_of(auto value) {
  std::string raw(sizeof(value), '\0');
  std::memcpy(raw.data(), &value, sizeof(value));
  return raw;
}

pickle::ReadOptions allowing(std::vector<std::string> globals, pickle::Flavor flavor = pickle::Flavor::kOneflow) {
  pickle::ReadOptions options{.flavor = flavor};
  options.policy.allowed_globals = std::move(globals);
  return options;
}

ErrorCode refusal(std::string_view stream, const pickle::ReadOptions& options = {}) {
  auto result = pickle::read(bytes_of(stream), options, "policy.pkl");
  REQUIRE_FALSE(result.ok());
  return result.error().code();
}

// Written back, the document reads as the same tree and writes the same bytes again.
std::vector<std::byte> rewritten(const pickle::Document& document, const pickle::ReadOptions& options) {
  auto once = pickle::write(*document.root(), 2);
  REQUIRE(once.ok());
  auto again = pickle::read(*once, options, "rewritten.pkl");
  REQUIRE(again.ok());
  auto twice = pickle::write(*again->root(), 2);
  REQUIRE(twice.ok());
  CHECK(*once == *twice);
  return *once;
}

}  // namespace

TEST_CASE("by default an unknown global is refused, naming it, and nothing is run") {
  CHECK(refusal(kPosixPath) == ErrorCode::kPickleForbiddenGlobal);
  CHECK(refusal(kNamespace) == ErrorCode::kPickleForbiddenGlobal);
  auto result = pickle::read(bytes_of(kPosixPath), {}, "policy.pkl");
  CHECK(result.error().message().find("pathlib.PosixPath") != std::string::npos);
  // Allowing one global leaves every other one refused.
  CHECK(refusal(kPosixPath, allowing({"argparse.Namespace"})) == ErrorCode::kPickleForbiddenGlobal);
  CHECK(refusal(kNamespace, allowing({"pathlib.PosixPath"})) == ErrorCode::kPickleForbiddenGlobal);
}

TEST_CASE("an allowed global called by REDUCE is a stub holding its class and arguments") {
  auto options = allowing({"pathlib.PosixPath"});
  auto document = pickle::read(bytes_of(kPosixPath), options, "policy.pkl");
  REQUIRE(document.ok());
  const pickle::Value* path = document->root()->find("out");
  REQUIRE(path != nullptr);
  REQUIRE(path->kind == pickle::Kind::kStub);
  CHECK(path->cls->text == "pathlib");
  CHECK(path->cls->name == "PosixPath");
  CHECK_FALSE(path->newobj);
  CHECK_FALSE(path->is_module_stub());
  REQUIRE(path->items.size() == 1);
  REQUIRE(path->items[0]->items.size() == 2);
  CHECK(path->items[0]->items[1]->is_string("tmp"));
  CHECK(path->state == nullptr);
  // pickle.py's own bytes come back: memo puts, REDUCE, no BUILD.
  CHECK(rewritten(*document, options) == std::vector<std::byte>(bytes_of(kPosixPath).begin(), bytes_of(kPosixPath).end()));
  // --stub-unknown allows it too.
  pickle::ReadOptions any;
  any.policy.stub_unknown = true;
  CHECK(pickle::read(bytes_of(kPosixPath), any, "policy.pkl").ok());
}

TEST_CASE("an allowed class made by NEWOBJ takes one BUILD state; its attributes name tensors") {
  auto options = allowing({"argparse.Namespace"});
  auto document = pickle::read(bytes_of(kNamespace), options, "policy.pkl");
  REQUIRE(document.ok());
  const pickle::Value* args = document->root()->find("args");
  REQUIRE(args->kind == pickle::Kind::kStub);
  CHECK(args->newobj);
  REQUIRE(args->state != nullptr);
  CHECK(args->state->find("lr")->real == 0.5);
  rewritten(*document, options);
  // BUILD twice is not what pickle.py writes for one object.
  std::string twice = kNamespace;
  twice.insert(twice.size() - 2, "}b");
  CHECK(refusal(twice, options) == ErrorCode::kPickleForbiddenGlobal);

  // A OneFlow tensor among the attributes is named under the stub's key.
  std::string tensor = "coneflow\nTensor\n)\x81}" + str("path") + str("tensor_1") + "sb";
  std::string with_tensor = "\x80\x02}(" + str("args") + "cargparse\nNamespace\n)\x81}" + str("w") + tensor + "sbu.";
  auto holding = pickle::read(bytes_of(with_tensor), options, "policy.pkl");
  REQUIRE(holding.ok());
  auto named = pickle::named_tensors(*holding->root(), "policy.pkl");
  REQUIRE(named.ok());
  REQUIRE(named->size() == 1);
  CHECK((*named)[0].name == "args.w");
  // One among the arguments has no state_dict name: refused, not dropped.
  std::string in_arguments = "\x80\x02}(" + str("p") + "cpathlib\nPosixPath\n" + tensor + "\x85Ru.";
  auto refused = pickle::read(bytes_of(in_arguments), allowing({"pathlib.PosixPath"}), "policy.pkl");
  REQUIRE(refused.ok());
  auto unnamed = pickle::named_tensors(*refused->root(), "policy.pkl");
  REQUIRE_FALSE(unnamed.ok());
  CHECK(unnamed.error().code() == ErrorCode::kPickleStructure);
}

TEST_CASE("a stub of a dict subclass takes SETITEMS; globals as values and arguments need allowing") {
  // collections.defaultdict(builtins.list, {'a': 1}), protocol 2 (builtins spelt __builtin__).
  std::string defaultdict = "\x80\x02" "ccollections\ndefaultdict\nc__builtin__\nlist\n\x85R" + str("a") + "K\x01s.";
  CHECK(refusal(defaultdict, allowing({"collections.defaultdict"})) == ErrorCode::kPickleForbiddenGlobal);
  auto options = allowing({"collections.defaultdict", "builtins.list"});
  auto document = pickle::read(bytes_of(defaultdict), options, "policy.pkl");
  REQUIRE(document.ok());
  const pickle::Value* dict = document->root();
  REQUIRE(dict->kind == pickle::Kind::kStub);
  REQUIRE(dict->entries.size() == 1);
  CHECK(dict->entries[0].second->integer == 1);
  CHECK(dict->items[0]->items[0]->name == "list");
  rewritten(*document, options);
  // A global as a plain value.
  std::string value = "\x80\x02}(" + str("f") + "cmath\ncos\nu.";
  CHECK(refusal(value) == ErrorCode::kPickleForbiddenGlobal);
  CHECK(pickle::read(bytes_of(value), allowing({"math.cos"}), "policy.pkl").ok());
}

TEST_CASE("the policy never opens instance, extension or keyword-construction opcodes") {
  pickle::ReadOptions any;
  any.policy.stub_unknown = true;
  CHECK(refusal("\x80\x02(cos\nsystem\n" + str("id") + "o."s, any) == ErrorCode::kPickleUnsupportedOpcode);  // OBJ
  CHECK(refusal("\x80\x02(" "ios\nsystem\n" + str("id") + "."s, any) == ErrorCode::kPickleUnsupportedOpcode);  // INST
  CHECK(refusal("\x80\x04" "cos\nsystem\n)}\x92."s, any) == ErrorCode::kPickleForbiddenCall);  // NEWOBJ_EX
  CHECK(refusal("\x80\x02\x82\x01."s, any) == ErrorCode::kPickleUnsupportedOpcode);  // EXT1
  // os.system is kept as data: a stub whose arguments are the command, never run.
  auto document = pickle::read(bytes_of("\x80\x02" "cos\nsystem\n" + str("touch /tmp/ckpt-pwned") + "\x85R."), any, "x.pkl");
  REQUIRE(document.ok());
  CHECK(document->root()->kind == pickle::Kind::kStub);
  CHECK(document->root()->items[0]->items[0]->is_string("touch /tmp/ckpt-pwned"));
}

TEST_CASE("numpy scalars decode to Python values in any flavor once allowed") {
  const std::string f8 = numpy_scalar("f8", raw_of(0.25));
  CHECK(refusal(f8, {.flavor = pickle::Flavor::kTorch}) == ErrorCode::kPickleForbiddenGlobal);
  auto options = allowing({"numpy.core.multiarray.scalar"}, pickle::Flavor::kTorch);
  auto decoded = [&](const std::string& stream) -> const pickle::Value* {
    static std::vector<pickle::Document> kept;
    auto document = pickle::read(bytes_of(stream), options, "scalar.pkl");
    REQUIRE(document.ok());
    REQUIRE(document->root()->kind == pickle::Kind::kNumpyScalar);
    rewritten(*document, options);
    kept.push_back(std::move(document).value());
    return kept.back().root()->decoded;
  };
  REQUIRE(decoded(f8) != nullptr);
  CHECK(decoded(f8)->real == 0.25);
  CHECK(decoded(numpy_scalar("f4", raw_of(1.5f)))->real == 1.5);
  CHECK(decoded(numpy_scalar("i8", raw_of(std::int64_t{-7})))->integer == -7);
  CHECK(decoded(numpy_scalar("i2", raw_of(std::int16_t{-300})))->integer == -300);
  CHECK(decoded(numpy_scalar("u4", raw_of(std::uint32_t{4000000000u})))->integer == 4000000000);
  CHECK(decoded(numpy_scalar("b1", "\x01", "|"))->boolean);
  // No Python int of 64 bits for 2**63, no float16, no big-endian: kept as bytes only.
  CHECK(decoded(numpy_scalar("u8", raw_of(std::uint64_t{1} << 63))) == nullptr);
  CHECK(decoded(numpy_scalar("f2", "\x00\x3c")) == nullptr);
  CHECK(decoded(numpy_scalar("i4", raw_of(std::int32_t{1}), ">")) == nullptr);
  // A scalar whose bytes do not fit its dtype is kept undecoded, never read past.
  CHECK(decoded(numpy_scalar("f8", "\x01\x02")) == nullptr);
  // The dtype must be a built numpy dtype.
  CHECK(refusal("\x80\x03" "cnumpy.core.multiarray\nscalar\n" + str("f8") + "C\x01\x00\x86R."s, options) ==
        ErrorCode::kPickleForbiddenCall);
}

TEST_CASE("numpy arrays in a torch pickle are read once _reconstruct is allowed, with ndarray and dtype") {
  // numpy.core.multiarray._reconstruct(numpy.ndarray, (0,), b'b') + BUILD (1, (2,), dtype('<u4'), False, bytes)
  std::string dtype = "cnumpy\ndtype\n" + str("u4") + "\x89\x88\x87R(K\x03" + str("<") + "NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"s;
  std::string array = "\x80\x03" "cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85" "C\x01" "b\x87R"
                      "(K\x01K\x02\x85"s + dtype + "\x89" "C\x08\x01\x00\x00\x00\x02\x00\x00\x00tb."s;
  CHECK(refusal(array, {.flavor = pickle::Flavor::kTorch}) == ErrorCode::kPickleForbiddenGlobal);
  CHECK(refusal(array, allowing({"numpy.core.multiarray.scalar"}, pickle::Flavor::kTorch)) ==
        ErrorCode::kPickleForbiddenGlobal);
  for (const std::string& allowed : {"numpy.core.multiarray._reconstruct"s, "numpy._core.multiarray._reconstruct"s}) {
    std::string stream = array;
    if (allowed.starts_with("numpy._core")) stream.replace(stream.find("numpy.core"), 10, "numpy._core");
    auto options = allowing({allowed}, pickle::Flavor::kTorch);
    auto document = pickle::read(bytes_of(stream), options, "array.pkl");
    REQUIRE(document.ok());
    CHECK(document->root()->kind == pickle::Kind::kNumpyArray);
    rewritten(*document, options);
  }
}

TEST_CASE("a numpy array of a dtype ckpt has is a tensor with its own bytes where asked and the policy let it in") {
  auto array_of = [](std::string_view code, std::string_view order, std::string_view fortran, std::string_view raw) {
    std::string dtype = "cnumpy\ndtype\n" + str(code) + "\x89\x88\x87R(K\x03" + str(order) +
                        "NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"s;
    return "\x80\x02}" + str("rng") + "cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85" "C\x01" "b\x87R"
                          "(K\x01K\x02K\x01\x86"s + dtype + std::string(fortran) + "C"s + static_cast<char>(raw.size()) +
           std::string(raw) + "tbs."s;
  };
  const std::string u32 = "\x01\x00\x00\x00\x02\x00\x00\x00"s;
  auto torch = allowing({"numpy.core.multiarray._reconstruct"}, pickle::Flavor::kTorch);
  torch.numpy_array_tensors = true;  // as TorchFile reads
  auto document = pickle::read(bytes_of(array_of("u4", "<", "\x89", u32)), torch, "rng.pkl");
  REQUIRE(document.ok());
  const pickle::Value* array = document->root()->find("rng");
  CHECK(array->is_tensor());
  auto named = pickle::named_tensors(*document->root(), "rng.pkl");
  REQUIRE(named.ok());
  REQUIRE(named->size() == 1);
  CHECK((*named)[0].name == "rng");
  CHECK(pickle::object_leaves(*document->root()).empty());
  auto data = pickle::numpy_array_data(*array, "rng.pkl", "rng");
  REQUIRE(data.ok());
  CHECK(data->meta.dtype() == ckpt::DType::kUInt32);
  CHECK(data->meta.shape() == ckpt::Shape{2, 1});
  CHECK_FALSE(data->fortran_order);
  CHECK(data->bytes->text == u32);
  auto fortran = pickle::read(bytes_of(array_of("u4", "<", "\x88", u32)), torch, "rng.pkl");
  REQUIRE(fortran.ok());
  CHECK(pickle::numpy_array_data(*fortran->root()->find("rng"), "rng.pkl", "rng")->fortran_order);
  // A size other than numel x itemsize is the tensor's error, not a value.
  auto short_one = pickle::read(bytes_of(array_of("u4", "<", "\x89", u32.substr(0, 6))), torch, "rng.pkl");
  REQUIRE(short_one.ok());
  CHECK(short_one->root()->find("rng")->is_tensor());
  CHECK(pickle::numpy_array_data(*short_one->root()->find("rng"), "rng.pkl", "rng").error().code() ==
        ErrorCode::kDataSizeMismatch);
  // Big-endian, void (numpy has no bfloat16) and string arrays stay values, listed as leaves.
  for (auto [code, order] : {std::pair{"u4", ">"}, std::pair{"V4", "|"}, std::pair{"U1", "<"}}) {
    auto other = pickle::read(bytes_of(array_of(code, order, "\x89", u32)), torch, "rng.pkl");
    REQUIRE(other.ok());
    CHECK_FALSE(other->root()->find("rng")->is_tensor());
    CHECK(pickle::named_tensors(*other->root(), "rng.pkl")->empty());
    CHECK(pickle::object_leaves(*other->root()).size() == 1);
  }
  // Unasked (OneFlow's S1, whose arrays hold its tensors' data) every array is a value.
  const std::string pickled = array_of("u4", "<", "\x89", u32);
  const auto stream = bytes_of(pickled);
  auto single_file = allowing({"numpy.core.multiarray._reconstruct"});
  auto oneflow = pickle::read(stream, single_file, "rng.pkl");
  REQUIRE(oneflow.ok());
  CHECK_FALSE(oneflow->root()->find("rng")->is_tensor());
  // P1 asks: a tensor where the caller's policy let the array in, not where OneFlow's allow-list did.
  auto pickle_dir = single_file;
  pickle_dir.numpy_array_tensors = true;
  CHECK(pickle::read(stream, pickle_dir, "rng.pkl")->root()->find("rng")->is_tensor());
  auto stub_unknown = pickle_dir;
  stub_unknown.policy = {};
  stub_unknown.policy.stub_unknown = true;
  CHECK(pickle::read(stream, stub_unknown, "rng.pkl")->root()->find("rng")->is_tensor());
  pickle::ReadOptions allow_list_only{.numpy_array_tensors = true};
  auto value = pickle::read(stream, allow_list_only, "rng.pkl");
  REQUIRE(value.ok());
  CHECK_FALSE(value->root()->find("rng")->is_tensor());
}

TEST_CASE("protocol 2's Python 2 names are allowed under their Python 3 names, as CPython maps them") {
  // pickle.dumps(functools.partial(int), protocol=2) by Python 3.11: builtins.int is written as
  // __builtin__.long (Lib/_compat_pickle.py, REVERSE_NAME_MAPPING).
  const std::string partial = "\x80\x02" "cfunctools\npartial\nq\x00" "c__builtin__\nlong\nq\x01\x85q\x02Rq\x03(h\x01)}q\x04Ntq\x05" "b."s;
  auto only_partial = allowing({"functools.partial"});
  CHECK(refusal(partial, only_partial) == ErrorCode::kPickleForbiddenGlobal);
  CHECK(pickle::read(bytes_of(partial), only_partial, "p.pkl").error().message().find("'__builtin__.long'") !=
        std::string::npos);
  auto with_int = allowing({"functools.partial", "builtins.int"});
  auto document = pickle::read(bytes_of(partial), with_int, "p.pkl");
  REQUIRE(document.ok());
  const pickle::Value* function = document->root()->items[0]->items[0];
  CHECK((function->text == "__builtin__" && function->name == "long"));  // kept as written
  CHECK(rewritten(*document, with_int) == std::vector<std::byte>(bytes_of(partial).begin(), bytes_of(partial).end()));
  // Module renames (IMPORT_MAPPING) and the other name renames.
  for (auto [python2, python3] : {std::pair{"copy_reg\n_reconstructor", "copyreg._reconstructor"},
                                  std::pair{"__builtin__\nunicode", "builtins.str"},
                                  std::pair{"__builtin__\nxrange", "builtins.range"},
                                  std::pair{"__builtin__\nbytearray", "builtins.bytearray"},
                                  std::pair{"exceptions\nValueError", "builtins.ValueError"}}) {
    const std::string stream = "\x80\x02" "c"s + python2 + "\n)R."s;
    CHECK(refusal(stream, allowing({std::string(python2).replace(std::string(python2).find('\n'), 1, ".")})) ==
          ErrorCode::kPickleForbiddenGlobal);
    CHECK(pickle::read(bytes_of(stream), allowing({python3}), "p.pkl").ok());
  }
  // Protocols 3 and up are not mapped, as in CPython.
  CHECK(refusal("\x80\x03" "c__builtin__\nlong\n)R."s, allowing({"builtins.int"})) == ErrorCode::kPickleForbiddenGlobal);
}
