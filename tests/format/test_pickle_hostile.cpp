// A corpus of hostile pickles, written as bytes: each must be refused with
// the right code and a message that names the problem, and nothing may run.
#include "ckpt/format/pickle.hpp"

#include <doctest/doctest.h>

#include <filesystem>

#include "test_support.hpp"

namespace pickle = ckpt::pickle;
using ckpt::ErrorCode;
using namespace std::string_literals;

namespace {

std::vector<std::byte> bytes_of(std::string_view text) {
  auto span = ckpt::as_bytes(text);
  return {span.begin(), span.end()};
}

std::string le32(std::uint32_t n) {
  return {static_cast<char>(n & 0xFF), static_cast<char>((n >> 8) & 0xFF), static_cast<char>((n >> 16) & 0xFF),
          static_cast<char>((n >> 24) & 0xFF)};
}

std::string binunicode(std::string_view text) { return "X" + le32(static_cast<std::uint32_t>(text.size())) + std::string(text); }

struct Refusal {
  ErrorCode code;
  std::string message;
};

Refusal refuse(std::string_view stream, pickle::Flavor flavor = pickle::Flavor::kOneflow, pickle::ReadLimits limits = {}) {
  auto result = pickle::read(bytes_of(stream), pickle::ReadOptions{flavor, limits}, "hostile.pkl");
  REQUIRE_FALSE(result.ok());
  const ckpt::Error& error = result.error();
  CHECK(error.file() == "hostile.pkl");
  return {error.code(), error.describe()};
}

bool mentions(const Refusal& refusal, std::string_view text) { return refusal.message.find(text) != std::string::npos; }

}  // namespace

TEST_CASE("globals outside the allow-list are refused before anything is called") {
  ckpt::testing::TempDir dir;
  auto witness = dir / "pwned";
  std::string command = "touch " + witness.string();
  // os.system(command) as protocol 2 writes it on Linux, then the same through subprocess and eval.
  auto r = refuse("\x80\x02" "cposix\nsystem\n" + binunicode(command) + "\x85R.");
  CHECK(r.code == ErrorCode::kPickleForbiddenGlobal);
  CHECK(mentions(r, "'posix.system'"));
  r = refuse("\x80\x04\x8c\x0asubprocess\x8c\x05Popen\x93" + binunicode(command) + "\x85R.");
  CHECK(r.code == ErrorCode::kPickleForbiddenGlobal);
  CHECK(mentions(r, "'subprocess.Popen'"));
  r = refuse("\x80\x02" "c__builtin__\neval\n" + binunicode("__import__('os').system('" + command + "')") + "\x85R.");
  CHECK(r.code == ErrorCode::kPickleForbiddenGlobal);
  CHECK(mentions(r, "'__builtin__.eval'"));
  r = refuse("\x80\x03" "cbuiltins\ngetattr\n.");
  CHECK(r.code == ErrorCode::kPickleForbiddenGlobal);
  CHECK_FALSE(std::filesystem::exists(witness));
  // The torch flavor has no more reach: torch.load and numpy are not on its list either.
  CHECK(refuse("\x80\x02" "ctorch\nload\n.", pickle::Flavor::kTorch).code == ErrorCode::kPickleForbiddenGlobal);
  CHECK(refuse("\x80\x02" "cnumpy.core.multiarray\n_reconstruct\n.", pickle::Flavor::kTorch).code ==
        ErrorCode::kPickleForbiddenGlobal);
  // Each flavor enables only its own builders.
  CHECK(refuse("\x80\x02" "ctorch._utils\n_rebuild_tensor_v2\n.").code == ErrorCode::kPickleForbiddenGlobal);
  CHECK(refuse("\x80\x02" "coneflow.nn\nParameter\n.", pickle::Flavor::kTorch).code ==
        ErrorCode::kPickleForbiddenGlobal);
}

TEST_CASE("REDUCE, NEWOBJ and BUILD run only the allow-list's builders, with the arguments they expect") {
  // A storage type or a tensor class is a value, never a function.
  auto r = refuse("\x80\x02" "ctorch\nFloatStorage\n)R.", pickle::Flavor::kTorch);
  CHECK(r.code == ErrorCode::kPickleForbiddenCall);
  CHECK(mentions(r, "torch.FloatStorage"));
  CHECK(refuse("\x80\x02" "coneflow.nn\nParameter\n)R.").code == ErrorCode::kPickleForbiddenCall);
  // REDUCE of something that is not a global.
  CHECK(refuse("\x80\x02" "])R.").code == ErrorCode::kPickleForbiddenCall);
  // OrderedDict with arguments, NEWOBJ of OrderedDict, NEWOBJ_EX.
  CHECK(refuse("\x80\x02" "ccollections\nOrderedDict\n]\x85R.").code == ErrorCode::kPickleForbiddenCall);
  CHECK(refuse("\x80\x02" "ccollections\nOrderedDict\n)\x81.").code == ErrorCode::kPickleForbiddenCall);
  CHECK(refuse("\x80\x04" "coneflow.nn\nParameter\n)}\x92.").code == ErrorCode::kPickleForbiddenCall);
  // BUILD on a list, on a plain dict, and an OrderedDict attribute other than _metadata.
  CHECK(refuse("\x80\x02" "]}b.").code == ErrorCode::kPickleForbiddenCall);
  CHECK(refuse("\x80\x02" "}}b.").code == ErrorCode::kPickleForbiddenCall);
  r = refuse("\x80\x02" "ccollections\nOrderedDict\n)R}" + binunicode("__class__") + "Nsb.");
  CHECK(r.code == ErrorCode::kPickleForbiddenCall);
  CHECK(mentions(r, "_metadata"));
  // A OneFlow tensor built twice.
  CHECK(refuse("\x80\x02" "coneflow\nTensor\n)\x81}b}b.").code == ErrorCode::kPickleForbiddenCall);
  // _rebuild_tensor_v2 with a negative size, and persistent ids that are not torch storages.
  std::string storage = "(" + binunicode("storage") + "ctorch\nFloatStorage\n" + binunicode("0") + binunicode("cpu") +
                        "K\x04tQ";
  std::string hooks = "ccollections\nOrderedDict\n)R";
  CHECK(refuse("\x80\x02" "ctorch._utils\n_rebuild_tensor_v2\n(" + storage + "K\x00J\xff\xff\xff\xff\x85K\x01\x85\x89"s +
                   hooks + "tR.",
               pickle::Flavor::kTorch)
            .code == ErrorCode::kPickleForbiddenCall);
  CHECK(refuse("\x80\x02" + binunicode("0") + "Q.", pickle::Flavor::kTorch).code == ErrorCode::kPickleForbiddenCall);
  CHECK(refuse("\x80\x02" + binunicode("0") + "Q.").code == ErrorCode::kPickleForbiddenCall);  // none in OneFlow
}

TEST_CASE("one torch storage named with two sizes is refused") {
  auto storage = [](char numel) {
    return "(" + binunicode("storage") + "ctorch\nFloatStorage\n" + binunicode("0") + binunicode("cpu") + "K" + numel + "tQ";
  };
  // The same storage key, 4 and 8 elements: torch keeps the first, another reader might keep the second.
  auto r = refuse("\x80\x02(" + storage('\x04') + storage('\x08') + "l.", pickle::Flavor::kTorch);
  CHECK(r.code == ErrorCode::kPickleStructure);
  CHECK(mentions(r, "two sizes, 4 and 8"));
  // Named twice with the same size it is one storage.
  CHECK(pickle::read(bytes_of("\x80\x02(" + storage('\x04') + storage('\x04') + "l."), {pickle::Flavor::kTorch}).ok());
}

TEST_CASE("the decoded object is capped by bytes, not only by values") {
  // 1M NONEs in a list (about 1 MB of pickle): under the value cap of 4M, but
  // each value is a node of a few hundred bytes; it used to take 1.7 GB for 4.19M.
  auto r = refuse("\x80\x02](" + std::string(1'000'000, 'N') + "e.");
  CHECK(r.code == ErrorCode::kPickleLimit);
  CHECK(mentions(r, "max_decoded_bytes"));
  // A small budget counts string bytes and container slots too.
  pickle::ReadLimits small;
  small.max_decoded_bytes = 4096;
  CHECK(refuse("\x80\x02" + binunicode(std::string(5000, 'a')) + ".", pickle::Flavor::kOneflow, small).code ==
        ErrorCode::kPickleLimit);
  CHECK(pickle::read(bytes_of("\x80\x02" + binunicode(std::string(500, 'a')) + "."), {pickle::Flavor::kOneflow, small}).ok());
  // A real pickle stays far below the default budget.
  std::string good = ckpt::testing::read_file(ckpt::testing::fixtures_root() / "oneflow-emulated" /
                                              "B_pickle_dir_v0.6-0.9_py38plus_proto4" / "pickled_data");
  CHECK(pickle::read(bytes_of(good)).ok());
}

TEST_CASE("opcodes a data reader has no use for are refused") {
  // INST and OBJ instantiate classes, EXT1 uses the copyreg registry, INT is text mode,
  // NEXT_BUFFER needs out-of-band buffers.
  for (std::string_view stream : {std::string_view("\x80\x02(ios\nsystem\n.", 15), std::string_view("\x80\x02(o.", 5),
                                  std::string_view("\x80\x02\x82\x01.", 5), std::string_view("\x80\x02I1\n.", 6),
                                  std::string_view("\x80\x05\x97.", 4)}) {
    CAPTURE(stream);
    CHECK(refuse(stream).code == ErrorCode::kPickleUnsupportedOpcode);
  }
  CHECK(refuse("\x80\x01N.").code == ErrorCode::kPickleUnsupportedOpcode);  // protocol 1
  CHECK(refuse("\x80\x06N.").code == ErrorCode::kPickleUnsupportedOpcode);
}

TEST_CASE("deep nesting, stacks and memos beyond the caps are refused") {
  // 300 nested MARKs.
  auto r = refuse("\x80\x02" + std::string(300, '(') + ".");
  CHECK(r.code == ErrorCode::kPickleLimit);
  CHECK(mentions(r, "MARK"));
  // 300 lists nested through the memo with a constant stack: [[[...]]].
  std::string nested = "\x80\x02]r" + le32(0) + "0";
  for (std::uint32_t i = 1; i <= 300; ++i) nested += "]j" + le32(i - 1) + "ar" + le32(i) + "0";
  nested += "j" + le32(300) + ".";
  r = refuse(nested);
  CHECK(r.code == ErrorCode::kPickleLimit);
  CHECK(mentions(r, "nesting deeper than 256"));
  // Memo-reference bomb: nine levels of ten references to the level below, 10^9 values as a tree.
  std::string bomb = "\x80\x02](";
  for (int k = 0; k < 10; ++k) bomb += "K\x00"s;
  bomb += "eq\x00" "0"s;
  for (int level = 1; level <= 9; ++level) {
    std::string get = "h" + std::string(1, static_cast<char>(level - 1));
    bomb += "](";
    for (int k = 0; k < 10; ++k) bomb += get;
    bomb += "eq" + std::string(1, static_cast<char>(level)) + "0";
  }
  bomb += "h\x09.";
  r = refuse(bomb);
  CHECK(r.code == ErrorCode::kPickleLimit);
  CHECK(mentions(r, "expands to more than"));
  // A list that contains itself.
  r = refuse("\x80\x02]q\x00h\x00" "a."s);
  CHECK(r.code == ErrorCode::kPickleStructure);
  CHECK(mentions(r, "contains itself"));
  // Huge memo indices, a missing memo entry, too many entries, a deep stack, too many values.
  r = refuse("\x80\x02Nr\xff\xff\xff\xff.");
  CHECK(r.code == ErrorCode::kPickleLimit);
  CHECK(mentions(r, "memo index 4294967295"));
  CHECK(refuse("\x80\x02h\x07.").code == ErrorCode::kPickleMalformed);
  pickle::ReadLimits small;
  small.max_memo = 10;
  CHECK(refuse("\x80\x04N" + std::string(11, '\x94') + ".", pickle::Flavor::kOneflow, small).code ==
        ErrorCode::kPickleLimit);
  small.max_stack = 100;
  CHECK(refuse("\x80\x02" + std::string(200, 'N') + ".", pickle::Flavor::kOneflow, small).code ==
        ErrorCode::kPickleLimit);
  small.max_values = 50;
  CHECK(refuse("\x80\x02](" + std::string(60, 'N') + "e.", pickle::Flavor::kOneflow, small).code ==
        ErrorCode::kPickleLimit);
  small.max_input_bytes = 4;
  CHECK(refuse("\x80\x02N.N", pickle::Flavor::kOneflow, small).code == ErrorCode::kPickleLimit);
}

TEST_CASE("truncated and malformed streams are errors, never reads past the end") {
  std::string good = ckpt::testing::read_file(ckpt::testing::fixtures_root() / "oneflow-emulated" /
                                              "B_pickle_dir_v0.6-0.9_py38plus_proto4" / "pickled_data");
  REQUIRE(pickle::read(bytes_of(good)).ok());
  for (std::size_t length = 0; length < good.size(); ++length) {
    CAPTURE(length);
    CHECK(refuse(std::string_view(good).substr(0, length)).code == ErrorCode::kPickleTruncated);
  }
  // Lengths far beyond the input are refused before any allocation.
  CHECK(refuse("\x80\x02X\xff\xff\xff\x7f").code == ErrorCode::kPickleTruncated);
  CHECK(refuse(std::string("\x80\x04\x8d\xff\xff\xff\xff\xff\xff\xff\x7f", 11)).code == ErrorCode::kPickleTruncated);
  CHECK(refuse(std::string("\x80\x04\x95\xff\xff\x00\x00\x00\x00\x00\x00N.", 13)).code == ErrorCode::kPickleTruncated);
  // Bytes after STOP, leftovers on the stack, pops from an empty stack, type confusion.
  CHECK(refuse("\x80\x02N.N").code == ErrorCode::kPickleMalformed);
  CHECK(refuse("\x80\x02NN.").code == ErrorCode::kPickleMalformed);
  CHECK(refuse("\x80\x02" "0.").code == ErrorCode::kPickleMalformed);
  CHECK(refuse("\x80\x02" "}Na.").code == ErrorCode::kPickleMalformed);
  CHECK(refuse("\x80\x02" "]NNs.").code == ErrorCode::kPickleMalformed);
  CHECK(refuse("\x80\x02" "}(Nu.").code == ErrorCode::kPickleMalformed);
  CHECK(refuse("\x80\x02" "e.").code == ErrorCode::kPickleMalformed);
  // A str that is not UTF-8, an integer wider than 64 bits, duplicate dict keys.
  CHECK(refuse("\x80\x02X\x02\x00\x00\x00\xc3\x28."s).code == ErrorCode::kPickleMalformed);
  CHECK(refuse(std::string("\x80\x02\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x00\x01.", 14)).code == ErrorCode::kPickleLimit);
  auto r = refuse("\x80\x02}(" + binunicode("k") + "N" + binunicode("k") + "Nu.");
  CHECK(r.code == ErrorCode::kPickleStructure);
  CHECK(mentions(r, "'k' twice"));
}

TEST_CASE("under --stub-unknown hostile globals are inert data and every cap still holds") {
  ckpt::testing::TempDir dir;
  auto witness = dir / "pwned";
  std::string command = "touch " + witness.string();
  pickle::ReadOptions any;
  any.policy.stub_unknown = true;
  for (const std::string& stream :
       {"\x80\x02" "cposix\nsystem\n" + binunicode(command) + "\x85R.",
        "\x80\x04\x8c\x0asubprocess\x8c\x05Popen\x93" + binunicode(command) + "\x85R.",
        "\x80\x02" "c__builtin__\neval\n" + binunicode("__import__('os').system('" + command + "')") + "\x85R."}) {
    auto document = pickle::read(bytes_of(stream), any, "hostile.pkl");
    REQUIRE(document.ok());
    CHECK(document->root()->kind == pickle::Kind::kStub);
  }
  CHECK_FALSE(std::filesystem::exists(witness));
  // A stub that contains itself through its state, a self-referencing list, deep nesting: refused as before.
  auto refused = [&](const std::string& stream, const pickle::ReadOptions& options) {
    auto result = pickle::read(bytes_of(stream), options, "hostile.pkl");
    REQUIRE_FALSE(result.ok());
    return result.error().code();
  };
  CHECK(refused("\x80\x02" "cm\nC\n)\x81q\x00h\x00" "b."s, any) == ErrorCode::kPickleStructure);
  CHECK(refused("\x80\x02]q\x00h\x00" "a."s, any) == ErrorCode::kPickleStructure);
  CHECK(refused("\x80\x02" + std::string(300, '(') + ".", any) == ErrorCode::kPickleLimit);
  pickle::ReadOptions small = any;
  small.limits.max_decoded_bytes = 4096;
  std::string many = "\x80\x02](";
  for (int i = 0; i < 100; ++i) many += "cm\nC\n)R";
  CHECK(refused(many + "e.", small) == ErrorCode::kPickleLimit);
}
