// spec/errors.md and the ErrorCode enum list the same codes under the same
// names: every row of the spec's tables is a code the library names so, and
// every code the library names has its row.
#include "ckpt/format/error.hpp"

#include <cstdlib>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>
#include <string>

#include <doctest/doctest.h>

namespace {

// Number -> name from the rows "| E101 | io | ... |".
std::map<unsigned, std::string> spec_codes() {
  const char* root = std::getenv("CKPT_SOURCE_ROOT");
  REQUIRE_MESSAGE(root != nullptr, "CKPT_SOURCE_ROOT is not set (run the tests through meson test)");
  std::ifstream file(std::string(root) + "/spec/errors.md");
  REQUIRE(file.good());
  std::map<unsigned, std::string> codes;
  const std::regex row(R"(^\|\s*E(\d{3})\s*\|\s*([a-z0-9_]+)\s*\|)");
  for (std::string line; std::getline(file, line);) {
    std::smatch match;
    if (!std::regex_search(line, match, row)) continue;
    auto number = static_cast<unsigned>(std::stoul(match[1]));
    CHECK_MESSAGE(codes.emplace(number, match[2]).second, "E", number, " appears twice in spec/errors.md");
  }
  return codes;
}

// Number -> name for every number the enum has (code_name knows it).
std::map<unsigned, std::string> library_codes() {
  std::map<unsigned, std::string> codes;
  for (unsigned number = 0; number < 1000; ++number) {
    auto name = ckpt::code_name(static_cast<ckpt::ErrorCode>(number));
    if (name != "unknown") codes.emplace(number, std::string(name));
  }
  return codes;
}

std::string listed(const std::map<unsigned, std::string>& codes) {
  std::ostringstream out;
  for (const auto& [number, name] : codes) out << "E" << number << " " << name << "\n";
  return out.str();
}

}  // namespace

TEST_CASE("spec/errors.md and ErrorCode hold the same codes and names") {
  const auto spec = spec_codes();
  const auto library = library_codes();
  REQUIRE(library.size() > 60);  // the enum's families, not an empty scan
  CHECK(listed(spec) == listed(library));
  CHECK(ckpt::code_id(ckpt::ErrorCode::kMetaSyntax) == "E302");
}
