"""The operations files we ship: Prometheus alert rules (checked and unit-tested with promtool) and
the Grafana dashboard, whose every metric must exist on the gateway's /metrics."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import Gateway

ROOT = Path(__file__).resolve().parent.parent
PROMETHEUS_DIR = ROOT / "config" / "prometheus"
DASHBOARD = ROOT / "config" / "grafana" / "solaris-gateway.json"
PROMTOOL = shutil.which("promtool")
METRIC = re.compile(r"\b(?:solaris|gen_ai)_[a-z0-9_]+\b")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool (Debian's prometheus) is needed")


def dashboard_expressions() -> list[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [target["expr"] for panel in panels for target in panel["targets"]]


def rule_expressions() -> list[str]:
    text = (PROMETHEUS_DIR / "alerts.yml").read_text()
    # The rules file is YAML; an expression is what follows `expr:`, on its line or as a block.
    return [block or line for block, line in re.findall(r"expr: (?:\|\n((?:\s{10}.*\n)+)|(.*))", text)]


def promtool(*args: str, cwd: Path = PROMETHEUS_DIR) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False)


@needs_promtool
def test_alert_rules_are_valid() -> None:
    result = promtool("check", "rules", "alerts.yml")
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_alert_rules_pass_their_unit_tests() -> None:
    result = promtool("test", "rules", "alerts.test.yml")
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    """Each panel query, written as a recording rule, passes promtool's parser."""
    rules = [
        f"      - record: panel_query_{i}\n        expr: {json.dumps(expr.replace('$__rate_interval', '5m'))}\n"
        for i, expr in enumerate(dashboard_expressions())
    ]
    (tmp_path / "panels.yml").write_text("groups:\n  - name: panels\n    rules:\n" + "".join(rules))
    result = promtool("check", "rules", "panels.yml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


async def test_every_metric_the_dashboard_and_rules_use_is_on_metrics(gateway: Gateway) -> None:
    await gateway.client().chat.completions.create(  # type: ignore[call-overload]
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Olá"}]
    )
    async with aiohttp.ClientSession() as session, session.get(f"{gateway.url}/metrics") as response:
        exposition = await response.text()
    families = set(re.findall(r"^# TYPE (\S+) ", exposition, re.MULTILINE))
    samples = set(re.findall(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)[{ ]", exposition, re.MULTILINE))
    offered = samples | {f"{family}{suffix}" for family in families for suffix in ("", "_bucket", "_sum", "_count")}
    used = {name for expr in dashboard_expressions() + rule_expressions() for name in METRIC.findall(expr)}
    assert len(used) >= 10
    assert used - offered == set(), f"used but not on /metrics: {sorted(used - offered)}"
