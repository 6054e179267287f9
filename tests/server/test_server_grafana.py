"""The Grafana files in deploy/grafana: every dashboard query names a measurement, a field
and tags the InfluxDB sink writes (``server.history.influx``), through the provisioned
datasource."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from server.history.influx import FIELDS, MEASUREMENTS

GRAFANA = Path(__file__).resolve().parents[2] / "deploy" / "grafana"
COMPARED = re.compile(r'\br\.(\w+)\s*==\s*"([^"]*)"')
GROUPED = re.compile(r"group\(columns:\s*\[([^\]]*)\]\)")


def _dashboards() -> list[dict[str, Any]]:
    paths = sorted((GRAFANA / "dashboards").glob("*.json"))
    assert paths, "no dashboard in deploy/grafana/dashboards"
    return [json.loads(path.read_text(encoding="utf-8")) for path in paths]


def _datasource_uid() -> str:
    provisioned = yaml.safe_load(
        (GRAFANA / "provisioning" / "datasources" / "stockgate.yaml").read_text(encoding="utf-8")
    )
    (source,) = provisioned["datasources"]
    assert source["type"] == "influxdb"
    assert source["jsonData"]["version"] == "Flux"
    return str(source["uid"])


def test_every_query_names_what_the_sink_writes() -> None:
    uid = _datasource_uid()
    queries = 0
    for dashboard in _dashboards():
        for panel in dashboard["panels"]:
            assert panel["datasource"]["uid"] == uid, panel["title"]
            for target in panel["targets"]:
                queries += 1
                compared = COMPARED.findall(target["query"])
                measurements = [value for name, value in compared if name == "_measurement"]
                assert len(measurements) == 1, panel["title"]
                measurement = measurements[0]
                assert measurement in MEASUREMENTS, (panel["title"], measurement)
                fields = [value for name, value in compared if name == "_field"]
                assert fields, panel["title"]
                assert set(fields) <= set(FIELDS[measurement]), (panel["title"], fields)
                tags = {name for name, _ in compared if not name.startswith("_")}
                for group in GROUPED.findall(target["query"]):
                    tags |= {column.strip().strip('"') for column in group.split(",") if column}
                assert tags <= set(MEASUREMENTS[measurement]), (panel["title"], tags)
    assert queries >= len(MEASUREMENTS)


def test_the_dashboard_provider_points_where_the_dashboards_go() -> None:
    provider = yaml.safe_load(
        (GRAFANA / "provisioning" / "dashboards" / "stockgate.yaml").read_text(encoding="utf-8")
    )
    (entry,) = provider["providers"]
    assert entry["type"] == "file"
    assert entry["options"]["path"].endswith("/stockgate")
    uids = [dashboard["uid"] for dashboard in _dashboards()]
    assert len(set(uids)) == len(uids)
