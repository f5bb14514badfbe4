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
    RECORDED_SERIES,
    ROOT,
    check_promql,
    compose,
    load_yaml,
)

RULE_FILES = sorted((DEPLOY / "prometheus" / "rules").glob("*.yml"))
RTF_SERIES = "instance_model:asr_real_time_factor:ratio_rate1m"


def _rules() -> list[dict]:
    return [rule for path in RULE_FILES for group in load_yaml(path)["groups"] for rule in group["rules"]]


def _dashboard_exprs() -> list[str]:
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "asr.json").read_text())
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


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
        "Final latency",
        "Errors by code",
        "Cancelled by clients",
        "Build",
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


def test_recorded_series_that_panels_and_alerts_read_are_recorded():
    """A panel or alert reading a recorded series (level:metric:operations) has its recording rule;
    the real-time factor is one, from counters (a gauge went stale while a replica idled)."""
    recorded = {rule["record"] for rule in _rules() if "record" in rule}
    assert RTF_SERIES in recorded
    read = {
        name for expr in [*_dashboard_exprs(), *(r["expr"] for r in _rules())] for name in RECORDED_SERIES.findall(expr)
    }
    assert RTF_SERIES in read
    assert read <= recorded, f"read but never recorded: {read - recorded}"


# The RTF rule on two replicas: "a" at 0.25 (0.25 step seconds per audio second), "b" at 0.875,
# both busy for 10 minutes, then idle (their counters stand still).
RTF_RULE_TEST = """
evaluation_interval: 15s
tests:
  - interval: 15s
    input_series:
      - series: 'asr_step_seconds_sum{instance="a:9400", model="m"}'
        values: '0+0.25x40 10x40'
      - series: 'asr_audio_seconds_total{instance="a:9400", model="m"}'
        values: '0+1x40 40x40'
      - series: 'asr_step_seconds_sum{instance="b:9400", model="m"}'
        values: '0+0.875x40 35x40'
      - series: 'asr_audio_seconds_total{instance="b:9400", model="m"}'
        values: '0+1x40 40x40'
    promql_expr_test:
      - expr: RTF
        eval_time: 5m
        exp_samples:
          - labels: 'RTF{instance="a:9400", model="m"}'
            value: 0.25
          - labels: 'RTF{instance="b:9400", model="m"}'
            value: 0.875
      - expr: RTF
        eval_time: 15m
        exp_samples: []
    alert_rule_test:
      - alertname: AsrSlowerThanRealTime
        eval_time: 8m
        exp_alerts:
          - exp_labels: {severity: warning, instance: "b:9400", model: m}
            exp_annotations: {summary: "b:9400 m: real-time factor 875m, close to falling behind the audio"}
      - alertname: AsrSlowerThanRealTime
        eval_time: 18m
        exp_alerts: []
""".replace("RTF", RTF_SERIES)


@pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed (Debian package prometheus)")
def test_promtool_real_time_factor_rule_follows_load_and_has_no_value_when_idle(tmp_path):
    """Evaluated by Prometheus itself: the recorded RTF per replica, no sample once a replica has
    had no audio for a minute (where the old gauge kept its last value), and the alert that
    fires on it and resolves when the replica idles."""
    test = yaml.safe_load(RTF_RULE_TEST)
    test["rule_files"] = [str(path) for path in RULE_FILES]
    path = tmp_path / "rtf-test.yml"
    path.write_text(yaml.safe_dump(test))
    proc = subprocess.run([PROMTOOL, "test", "rules", str(path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
