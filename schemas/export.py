"""Export the event contracts as JSON Schema files (``python -m schemas.export``).

The files under ``schemas/json/`` are checked in; a test fails when they drift from the code,
so a contract change is always a visible diff.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import msgspec

from schemas.events import PUBLIC_CONTRACTS

JSON_DIR = Path(__file__).parent / "json"


def json_schema(name: str) -> dict[str, Any]:
    schema = msgspec.json.schema(PUBLIC_CONTRACTS[name])
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
