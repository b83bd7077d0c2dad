"""Writes the C++ block under the README's "Using the library" heading to a
file that test_readme_snippet.cpp includes, so the test compiles the
snippet exactly as the README shows it. Usage: README.md OUTPUT"""
import re
import sys

readme, output = sys.argv[1], sys.argv[2]
text = open(readme, encoding="utf-8").read()
match = re.search(r"^## Using the library\n.*?^```cpp\n(.*?)^```", text, re.S | re.M)
if match is None:
    sys.exit(f"{readme}: no ```cpp block under '## Using the library'")
with open(output, "w", encoding="utf-8") as out:
    out.write(f"// Generated from {readme} by extract_readme_snippet.py\n")
    out.write(match.group(1))
