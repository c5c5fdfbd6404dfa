"""``docker-compose.yml`` and the Grafana provisioning are valid and point at files that exist.

The Compose file is validated against the Compose Specification JSON Schema, vendored in
``tests/data/compose-spec.schema.json`` (compose-spec/compose-spec, Apache-2.0; taken unchanged
from the npm package ``dclint@3.1.0``, ``schemas/compose.schema.json``, which ships the current
schema with ``name``, ``include`` and ``models``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
SCHEMA = ROOT / "tests" / "data" / "compose-spec.schema.json"
GRAFANA = ROOT / "infra" / "grafana" / "provisioning"
DASHBOARD = GRAFANA / "dashboards" / "repricer.json"
DATASOURCE_UID = "repricer-clickhouse"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return dict(yaml.safe_load(COMPOSE.read_text()))


def test_compose_matches_the_compose_spec(compose: dict[str, Any]) -> None:
    schema = json.loads(SCHEMA.read_text())
    validator = jsonschema.Draft7Validator(schema)
    errors = sorted(validator.iter_errors(compose), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


def test_schema_rejects_a_broken_compose_file(compose: dict[str, Any]) -> None:
    broken = json.loads(json.dumps(compose))
    broken["services"]["worker-1"]["depends_on"]["init"]["condition"] = "service_done"
    broken["services"]["kafka"]["imagee"] = "typo"  # unknown service key
    validator = jsonschema.Draft7Validator(json.loads(SCHEMA.read_text()))
    assert len(list(validator.iter_errors(broken))) >= 2


def _bind_sources(service: dict[str, Any]) -> list[str]:
    out = []
    for vol in service.get("volumes", []):
        source = vol.split(":", 1)[0] if isinstance(vol, str) else vol.get("source", "")
        if source.startswith((".", "/")):
            out.append(source)
    return out


def test_every_build_and_mount_points_at_files_in_the_repo(compose: dict[str, Any]) -> None:
    checked = 0
    for name, service in compose["services"].items():
        build = service.get("build")
        if build is not None:
            build = {"context": build} if isinstance(build, str) else build
            context = ROOT / build.get("context", ".")
            dockerfile = context / build.get("dockerfile", "Dockerfile")
            assert context.is_dir(), (name, context)
            assert dockerfile.is_file(), (name, dockerfile)
            for line in dockerfile.read_text().splitlines():
                if line.startswith(("COPY ", "ADD ")) and "--from" not in line:
                    for src in line.split()[1:-1]:
                        assert (context / src).exists(), (name, dockerfile.name, src)
            checked += 1
        for source in _bind_sources(service):
            assert source.startswith("./"), (name, source, "bind mounts must be repo-relative")
            assert (ROOT / source).exists(), (name, source)
            checked += 1
    assert checked >= 3  # the worker image, the schema mount and the Grafana provisioning


def test_grafana_provisioning_matches_the_mount(compose: dict[str, Any]) -> None:
    grafana = compose["services"]["grafana"]
    mounts = dict(v.split(":")[:2] for v in grafana["volumes"])
    target = mounts["./infra/grafana/provisioning"]
    providers = yaml.safe_load((GRAFANA / "dashboards" / "repricer.yml").read_text())["providers"]
    path = providers[0]["options"]["path"]
    assert path.startswith(target)
    local = GRAFANA / Path(path).relative_to(target)
    assert sorted(p.name for p in local.glob("*.json")) == ["repricer.json"]
    sources = yaml.safe_load((GRAFANA / "datasources" / "clickhouse.yml").read_text())
    assert [d["uid"] for d in sources["datasources"]] == [DATASOURCE_UID]


def _walk(node: Any) -> list[dict[str, Any]]:
    found = []
    if isinstance(node, dict):
        if "datasource" in node and isinstance(node["datasource"], dict):
            found.append(node["datasource"])
        for v in node.values():
            found.extend(_walk(v))
    elif isinstance(node, list):
        for v in node:
            found.extend(_walk(v))
    return found


def _sql(dash: dict[str, Any]) -> list[str]:
    out = [t["rawSql"] for p in dash["panels"] for t in p.get("targets", [])]
    out += [v["query"] for v in dash["templating"]["list"] if v["type"] == "query"]
    return out


def test_grafana_dashboard_is_valid_and_uses_the_provisioned_datasource() -> None:
    dash = json.loads(DASHBOARD.read_text())
    assert dash["uid"] and dash["title"] and isinstance(dash["schemaVersion"], int)
    titles = " | ".join(p["title"].lower() for p in dash["panels"])
    for word in ("price", "demand", "revenue", "forecast error"):
        assert word in titles, word
    refs = _walk(dash)
    assert refs and all(
        r == {"type": "grafana-clickhouse-datasource", "uid": DATASOURCE_UID} for r in refs
    )
    for p in dash["panels"]:
        assert p["targets"], p["title"]
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    for sql in _sql(dash):
        assert re.search(r"\bFINAL\b", sql), sql


def test_grafana_sql_runs_on_current_clickhouse(tmp_path: Path) -> None:
    """The panels' SQL (Grafana macros replaced by what they expand to) runs on chdb."""
    from repricer.infra.clickhouse import connect

    ch = connect(f"chdb://{tmp_path / 'chdb'}?database=grafana_check")
    try:
        ch.init()
        ch.insert(
            "forecasts",
            [{"sku": "A", "window_start": 60_000, "model": "river", "predicted": 2.0,
              "actual": 1.0, "version": 1}],
        )  # fmt: skip
        for sql in _sql(json.loads(DASHBOARD.read_text())):
            sql = re.sub(r"\$__timeFilter\((\w+)\)", r"\1 >= toDateTime(0)", sql)
            sql = re.sub(r"\$__timeInterval\((\w+)\)", r"toStartOfMinute(\1)", sql)
            sql = sql.replace("${sku:singlequote}", "'A', 'B'").replace(
                "repricer.", "grafana_check."
            )
            assert "$" not in sql, sql
            ch.query(sql)
        assert ch.query(
            "SELECT avg(abs(predicted - actual)) AS mae FROM grafana_check.forecasts FINAL"
        ) == [(1.0,)]
    finally:
        ch.close()
