"""Monitoring configs (issue 4): Prometheus scraping and alert rules, the Grafana dashboard.

Every asr_* series a rule or a panel reads must be one the server exports, with the right type.
With promtool installed (Debian package ``prometheus``), the Prometheus config, the alert rules
and every dashboard query are parsed by Prometheus itself; otherwise that one test skips.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest
import yaml
from deploy_helpers import (
    DEPLOY,
    METRICS,
    ROOT,
    check_promql,
    compose,
    load_yaml,
)


def test_prometheus_scrapes_every_replica():
    config = load_yaml(DEPLOY / "prometheus" / "prometheus.yml")
    env = compose()["services"]["asr"]["environment"]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    asr = jobs["asr"]
    assert asr.get("metrics_path", "/metrics") == "/metrics"
    # DNS discovery finds each replica; a static "asr:9400" would scrape one at random
    sd = asr["dns_sd_configs"]
    assert sd and sd[0]["names"] == ["asr"] and sd[0]["port"] == int(env["ASR_METRICS_PORT"])
    assert jobs["envoy"]["metrics_path"] == "/stats/prometheus"
    # rule_files are container paths: find them through the compose bind mounts
    mounts = {
        dst: ROOT / src
        for src, dst, *_ in (v.split(":") for v in compose()["services"]["prometheus"]["volumes"])
        if src.startswith(".")
    }
    rules = []
    for pattern in config["rule_files"]:
        folder, _, glob = pattern.rpartition("/")
        assert folder in mounts, f"rule_files {pattern} is not mounted into the Prometheus container"
        rules += sorted(mounts[folder].glob(glob))
    assert rules, "rule_files match no file"
    for path in rules:
        for group in load_yaml(path)["groups"]:
            for rule in group["rules"]:
                assert rule.get("alert") or rule.get("record")
                assert not check_promql(rule["expr"]), f"{rule.get('alert')}: {check_promql(rule['expr'])}"


PROMTOOL = shutil.which("promtool")


@pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed (Debian package prometheus)")
def test_promtool_accepts_the_config_rules_and_dashboard_queries(tmp_path):
    """promtool parses the Prometheus config, the alert rules, and every dashboard query."""

    def promtool(*args: str) -> None:
        proc = subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stdout + proc.stderr

    promtool("check", "config", "--syntax-only", str(DEPLOY / "prometheus" / "prometheus.yml"))
    promtool("check", "rules", *map(str, sorted((DEPLOY / "prometheus" / "rules").glob("*.yml"))))
    # Dashboard queries as recording rules, with Grafana's variables filled in
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "asr.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    variables = {"$__rate_interval": "1m", "$instance": ".*", "$model": ".*"}
    rules = []
    for i, expr in enumerate(exprs):
        for name, value in variables.items():
            expr = expr.replace(name, value)
        assert "$" not in expr, f"unknown Grafana variable in {expr}"
        rules.append({"record": f"dashboard:query_{i}", "expr": expr})
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    promtool("check", "rules", str(path))


def test_grafana_is_provisioned_with_the_dashboard():
    grafana = compose()["services"]["grafana"]
    mounts = dict(v.split(":")[:2] for v in grafana["volumes"] if v.startswith("."))
    provisioning = ROOT / next(src for src, dst in mounts.items() if dst == "/etc/grafana/provisioning")
    (datasource,) = load_yaml(provisioning / "datasources" / "prometheus.yml")["datasources"]
    assert datasource["type"] == "prometheus" and datasource["url"] == "http://prometheus:9090"
    (provider,) = load_yaml(provisioning / "dashboards" / "asr.yml")["providers"]
    dashboards_src = next(src for src, dst in mounts.items() if dst == provider["options"]["path"])
    dashboards = list((ROOT / dashboards_src).glob("*.json"))
    assert dashboards, "no dashboard JSON where the provider looks"
    dashboard = json.loads((ROOT / dashboards_src / "asr.json").read_text())
    panels = dashboard["panels"]
    titles = {p["title"] for p in panels}
    wanted = {
        "Active streams",
        "Batch size",
        "Queue wait",
        "Step time",
        "Real-time factor",
        "Partial latency",
        "Errors by code",
    }
    assert wanted <= titles, f"missing panels: {wanted - titles}"
    exprs = " ".join(t["expr"] for p in panels for t in p.get("targets", []))
    used = {m for m in METRICS if re.search(rf"\b{m}(_bucket|_sum|_count)?\b", exprs)}
    assert used == METRICS, f"metrics without a panel: {METRICS - used}"
    problems = check_promql(exprs)
    assert not problems, problems
    assert len({p["id"] for p in panels}) == len(panels)
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24
