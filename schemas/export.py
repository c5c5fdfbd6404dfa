"""Export the event contracts as JSON Schema files (``python -m schemas.export``).

The files under ``schemas/json/`` are checked in; a test fails when they drift from the code,
so a contract change is always a visible diff. Every ``description`` is normalised with
:func:`inspect.cleandoc`, so the files depend on the docstrings only, not on how a msgspec release
formats them (0.22 kept a docstring's indentation, 0.23 removes it).
"""

from __future__ import annotations

import inspect
import json
import sys
from pathlib import Path
from typing import Any

import msgspec

from repricer.schemas.events import PUBLIC_CONTRACTS

JSON_DIR = Path(__file__).parent / "json"
# keywords whose values are instance data, not schemas: left exactly as msgspec renders them
_DATA_KEYWORDS = frozenset({"const", "default", "enum", "examples"})


def normalised_descriptions(node: Any) -> Any:
    """``node`` with every string ``description`` in it passed through :func:`inspect.cleandoc`.

    >>> normalised_descriptions({"description": "One line.\\n\\n    Indented.\\n    "})
    {'description': 'One line.\\n\\nIndented.'}
    >>> normalised_descriptions({"properties": {"description": {"type": "string"}}})
    {'properties': {'description': {'type': 'string'}}}
    >>> normalised_descriptions({"default": {"description": "  kept  "}})
    {'default': {'description': '  kept  '}}
    """
    if isinstance(node, dict):
        return {
            key: inspect.cleandoc(value)
            if key == "description" and isinstance(value, str)
            else value
            if key in _DATA_KEYWORDS
            else normalised_descriptions(value)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [normalised_descriptions(item) for item in node]
    return node


def json_schema(name: str) -> dict[str, Any]:
    schema: dict[str, Any] = normalised_descriptions(msgspec.json.schema(PUBLIC_CONTRACTS[name]))
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = f"https://github.com/repricer/repricer/schemas/{name}.json"
    return schema


def rendered(name: str) -> str:
    return json.dumps(json_schema(name), indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    out = Path(argv[0]) if argv else JSON_DIR
    out.mkdir(parents=True, exist_ok=True)
    for name in PUBLIC_CONTRACTS:
        (out / f"{name}.json").write_text(rendered(name))
        print(f"wrote {out / f'{name}.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
