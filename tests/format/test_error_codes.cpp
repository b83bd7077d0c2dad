// spec/errors.md and the ErrorCode enum list the same codes under the same
// names: every row of the spec's tables is a code the library names so, and
// every code the library names has its row.
#include "ckpt/format/error.hpp"

#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <string_view>

#include <doctest/doctest.h>

namespace {

std::string trimmed(std::string_view text) {
  auto first = text.find_first_not_of(' ');
  auto last = text.find_last_not_of(' ');
  return first == std::string_view::npos ? std::string() : std::string(text.substr(first, last - first + 1));
}

// Number -> name from the rows "| E101 | io | ... |" (no std::regex: GCC 12
// warns inside <regex> under the sanitizers, and werror makes that fatal).
std::map<unsigned, std::string> spec_codes() {
  const char* root = std::getenv("CKPT_SOURCE_ROOT");
  REQUIRE_MESSAGE(root != nullptr, "CKPT_SOURCE_ROOT is not set (run the tests through meson test)");
  std::ifstream file(std::string(root) + "/spec/errors.md");
  REQUIRE(file.good());
  std::map<unsigned, std::string> codes;
  for (std::string line; std::getline(file, line);) {
    if (!line.starts_with("|")) continue;
    auto second_bar = line.find('|', 1);
    auto third_bar = second_bar == std::string::npos ? second_bar : line.find('|', second_bar + 1);
    if (third_bar == std::string::npos) continue;
    std::string code = trimmed(std::string_view(line).substr(1, second_bar - 1));
    std::string name = trimmed(std::string_view(line).substr(second_bar + 1, third_bar - second_bar - 1));
    bool is_code = code.size() == 4 && code[0] == 'E' &&
                   code.find_first_not_of("0123456789", 1) == std::string::npos;
    if (!is_code || name.empty() || name.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789_") != std::string::npos) {
      continue;
    }
    auto number = static_cast<unsigned>(std::stoul(code.substr(1)));
    CHECK_MESSAGE(codes.emplace(number, name).second, "E", number, " appears twice in spec/errors.md");
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
