"""Validates a tool's --json document against spec/schema/<tool>.schema.json.

Imported by the tool tests (tests/tools, tests/interop, tests/train); needs
Debian's python3-jsonschema under /usr/bin/python3.
"""
import json
import os
import pathlib

import jsonschema

SCHEMA_DIR = pathlib.Path(os.environ["CKPT_SOURCE_ROOT"]) / "spec" / "schema"


def _validator(tool):
    path = SCHEMA_DIR / f"{tool}.schema.json"
    schema = json.loads(path.read_text())
    resolver = jsonschema.RefResolver(base_uri=path.as_uri(), referrer=schema)
    return jsonschema.Draft202012Validator(schema, resolver=resolver)


def checked(text):
    """The document printed on stdout, parsed and validated against its tool's schema."""
    document = json.loads(text)
    _validator(document["tool"]).validate(document)
    return document
