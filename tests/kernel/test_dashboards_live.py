"""Every query of every dashboard panel, run against a real Prometheus scraping the real
daemon after a workload with every outcome: none may fail or come back empty. The overview
is for every exporter, so it is held to a default one (no --context, no
kernel.bpf_stats_enabled); the context board to one run with --context."""

import json
from pathlib import Path

import pytest

from tests.helpers import ROOT

from .conftest import REPEAT, Daemon, Prometheus, Workload
from .test_capture import EXPECTED

pytestmark = pytest.mark.kernel

DASHBOARDS = ROOT / "dashboards"
# What Grafana would put in for its own variables, at a 1 s scrape interval.
GRAFANA = {"$__rate_interval": "30s", "$__range": "5m", "$__interval": "5s"}


def panel_queries():
    for path in sorted(DASHBOARDS.glob("*.json")):
        board = json.loads(path.read_text())
        for panel in board["panels"]:
            for target in panel.get("targets", []):
                yield pytest.param(path.stem, panel["title"], target["expr"],
                                   id=f"{path.stem}: {panel['title']} {target['refId']}")


@pytest.fixture(scope="module")
def live(kcmpload, prometheus_bin, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dashboards")
    assert Path("/proc/sys/kernel/bpf_stats_enabled").read_text().strip() == "0"
    # The detections board's exporter has a policy (a dry run): its panels too.
    policy = tmp / "policy.yaml"
    policy.write_text(json.dumps({"policy": {"rules": [{
        "name": "nobody-reads-others", "action": "kill",
        "match": {"uids": [65534], "targets": ["other_user"]}}]}}))
    daemons = {"kcmp-overview": Daemon(tmp), "kcmp-context": Daemon(tmp, "--context"),
               "kcmp-detections": Daemon(tmp, "--detect", "--rules", str(policy))}
    prom = None
    try:
        for daemon in daemons.values():
            daemon.wait_ready()
        prom = Prometheus(prometheus_bin, tmp, [d.port for d in daemons.values()],
                          rule_files=[DASHBOARDS / "alerts.yml"])
        # Rates need samples on both sides of the workload.
        prom.wait_for("count_over_time(up[30s])", 3)
        wl = Workload.start(kcmpload, tmp / "files")
        wl.go()
        wl.finish()
        prom.wait_for("sum(kcmp_calls_total)", REPEAT * len(EXPECTED))
        prom.wait_for("count_over_time(up[30s])", 6)
        yield prom, daemons
    finally:
        if prom is not None:
            prom.stop()
        for daemon in daemons.values():
            daemon.stop()


@pytest.mark.parametrize("board, title, expr", list(panel_queries()))
def test_panel_query_returns_data(live, board, title, expr):
    prom, daemons = live
    filled = expr.replace('"$job"', '"kcmp"').replace('"$instance"',
                                                      f'"127.0.0.1:{daemons[board].port}"')
    for var, value in GRAFANA.items():
        filled = filled.replace(var, value)
    assert "$" not in filled, filled
    result = prom.query(filled)
    assert result, f"{title}: no data for {filled}"


def test_template_variables_have_values(live):
    prom, daemons = live
    assert prom.api("label/job/values?match[]=kcmp_monitor_build_info") == ["kcmp"]
    assert prom.api('label/instance/values?match[]=kcmp_monitor_build_info{job=~"kcmp"}') == \
        sorted(f"127.0.0.1:{d.port}" for d in daemons.values())


def test_alert_rules_load_in_prometheus(live):
    prom, _ = live
    groups = prom.api("rules")["groups"]
    rules = [r for g in groups for r in g["rules"]]
    assert len(rules) == 9 and all(r["health"] in ("ok", "unknown") for r in rules), rules
