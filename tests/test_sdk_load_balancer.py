"""The OpenAI and Anthropic SDKs through a real HAProxy whose idle timeout is shorter than theirs.

Each run (``lb_sdk_cases.py``) makes SDK calls with idle gaps on both sides
of HAProxy's timeout, in front of a fixture model API, then diagnoses:

* **visible FIN**: HAProxy closes idle client connections and the client sees
  the FIN. httpcore2 finds it at the next checkout: idle closes (upper
  bounds) that, with the reuses that worked, bracket the timeout.
* **lost FIN**: nftables drops HAProxy's FINs inside a private network
  namespace (``unshare -n``; needs root), as a load balancer that forgets
  connections. The next request on such a connection meets a RST and the SDK
  retries it by itself: every such reset must be a stale reuse with its idle
  time and the trace of the request that was hit, and ``diagnose()`` must
  find ``stale_keepalive`` with HAProxy's timeout within 15 %, print the
  SDK's own fix and see the retries.

The runs are subprocesses started together (they mostly sleep); the story's
own numbers (an 8 s load balancer, ``keepalive_expiry=15``) run the same way.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from seedance_otel import FaultKind

from system_binaries import require, require_root

HERE = Path(__file__).parent
ROOT = HERE.parent

IDLE_S = 2.0
GAPS_S = [1.0, 2.6, 1.6, 3.0, 1.8, 2.4, 1.2]
"""Idle before each call after the first: below HAProxy's 2 s (reuse works)
and above it (the connection is gone), all below httpx2's 5 s keep-alive."""
STORY_IDLE_S = 8.0
STORY_KEEPALIVE_S = 15.0
STORY_GAPS_S = [6.0, 9.0, 7.4, 10.0, 8.7]
TOLERANCE_S = 0.3
SDK_FIX = {
    "openai": "openai.AsyncOpenAI(http_client=openai.DefaultAsyncHttpxClient(limits=L))",
    "anthropic": "anthropic.AsyncAnthropic(http_client=anthropic.DefaultAsyncHttpxClient(",
}

_SHORT = {"idle_s": IDLE_S, "gaps_s": GAPS_S}
_STORY = {"idle_s": STORY_IDLE_S, "gaps_s": STORY_GAPS_S, "keepalive_s": STORY_KEEPALIVE_S}
RUNS: dict[str, dict[str, Any]] = {
    "visible-openai": {**_SHORT, "sdk": "openai"},
    "visible-anthropic": {**_SHORT, "sdk": "anthropic"},
    "lost-openai": {**_SHORT, "sdk": "openai", "lost_fin": True},
    "lost-anthropic": {**_SHORT, "sdk": "anthropic", "lost_fin": True},
    "lost-openai-sync": {**_SHORT, "sdk": "openai-sync", "lost_fin": True},
    "lost-anthropic-uvloop": {**_SHORT, "sdk": "anthropic", "lost_fin": True, "uvloop": True},
    "story-visible": {**_STORY, "sdk": "openai"},
    "story-lost": {**_STORY, "sdk": "openai", "lost_fin": True},
}


def _start(spec: dict[str, Any]) -> subprocess.Popen[str]:
    argv = [sys.executable, str(HERE / "lb_sdk_cases.py"), json.dumps(spec)]
    if spec.get("lost_fin"):
        argv = [require("unshare", "util-linux"), "-n", *argv]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )


def _run_all(runs: dict[str, dict[str, Any]], timeout_s: float) -> Any:
    haproxy = require("/usr/sbin/haproxy", "haproxy")
    can_netns = os.geteuid() == 0
    if can_netns:
        nft = require("/usr/sbin/nft", "nftables")
    procs = {}
    for name, spec in runs.items():
        if spec.get("lost_fin") and not can_netns:
            continue
        full = {**spec, "haproxy": haproxy}
        if spec.get("lost_fin"):
            full["nft"] = nft
        procs[name] = _start(full)
    results: dict[str, Any] = {}
    for name, proc in procs.items():
        try:
            out, err = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        assert proc.returncode == 0, f"{name}: {err}"
        results[name] = json.loads(out)
    return results


@pytest.fixture(scope="module")
def runs():
    """Every run at once: each mostly sleeps, so together they take as long as the longest."""
    return _run_all(RUNS, timeout_s=110)


def _result(runs: dict[str, Any], name: str) -> dict[str, Any]:
    if name not in runs:
        require_root(f"the lost-FIN run {name}")
    result: dict[str, Any] = runs[name]
    return result


def _finding(result: dict[str, Any], code: str) -> dict[str, Any]:
    found = [f for f in result["findings"] if f["code"] == code]
    assert len(found) == 1, [(f["code"], f["summary"]) for f in result["findings"]]
    finding: dict[str, Any] = found[0]
    return finding


def _check_diagnosis(result: dict[str, Any], sdk: str, idle_s: float) -> dict[str, Any]:
    codes = {f["code"] for f in result["findings"]}
    assert "reset_on_connect" not in codes, result["findings"]
    stale = _finding(result, "stale_keepalive")
    estimate = stale["params"]["peer_idle_timeout_s"]
    assert estimate is not None and abs(estimate - idle_s) <= 0.15 * idle_s, stale
    assert stale["evidence"]["libraries"] == ["httpx2"]
    fix = stale["fix"]
    assert fix.startswith("httpx2: "), fix
    assert SDK_FIX[sdk.partition("-")[0]] in fix
    keepalive = stale["params"]["recommended_keepalive_s"]
    assert 0 < keepalive < idle_s and f"keepalive_expiry={keepalive:g}" in fix
    return stale


@pytest.mark.parametrize("name", ["visible-openai", "visible-anthropic"])
def test_visible_fin_gives_idle_closes_and_the_estimate(runs, name):
    result = runs[name]
    calls, snaps = result["calls"], result["snapshots"]
    assert [c["outcome"] for c in calls] == ["ok"] * len(calls)
    assert {s["library"] for s in snaps} == {"httpx2"}  # nothing from the asyncio hook
    closes = [s for s in snaps if s["kind"] == FaultKind.PEER_CLOSED_IDLE.value]
    assert len(closes) == len(snaps) == sum(1 for g in GAPS_S if g > IDLE_S)
    for snap in closes:
        assert snap["connection_idle_s"] >= IDLE_S and snap["connection_reused"] is True
        assert snap["peer_port"] == result["lb_port"] and snap["local_port"]
    stale = _check_diagnosis(result, RUNS[name]["sdk"], IDLE_S)
    assert stale["evidence"]["idle_closes"] == len(closes)


def _check_lost_fin(result: dict[str, Any], sdk: str, gaps_s: list[float], idle_s: float) -> None:
    calls, snaps = result["calls"], result["snapshots"]
    # The SDK retried every reset on a new connection: the callers saw no error,
    # and the backend answered each call once.
    assert [c["outcome"] for c in calls] == ["ok"] * len(calls)
    assert result["backend_requests"] == len(calls)
    assert {s["library"] for s in snaps} == {"httpx2"}, snaps
    resets = [s for s in snaps if s["kind"] == FaultKind.CONNECTION_RESET.value]
    hit = [i + 1 for i, gap in enumerate(gaps_s) if gap > idle_s]
    assert len(resets) == len(snaps) == len(hit), snaps
    for snap, index in zip(resets, hit):
        gap = gaps_s[index - 1]
        assert snap["phase"] == "request" and snap["connection_reused"] is True
        assert gap - 0.05 <= snap["connection_idle_s"] <= gap + TOLERANCE_S, (snap, gap)
        assert snap["connection_requests"] >= 1
        assert snap["peer_port"] == result["lb_port"]
        # The sync client's write meets the RST first; httpcore2 ignores a failed
        # write and then reads EOF ("Server disconnected"), so no errno there.
        assert snap["errno"] == (None if sdk.endswith("-sync") else 104), snap
        # The trace of the request that was hit, not of the one that opened the connection.
        call = calls[index]
        assert (snap["trace_id"], snap["span_id"]) == (call["trace_id"], call["span_id"])
    stale = _check_diagnosis(result, sdk, idle_s)
    assert stale["evidence"]["resets"] == len(resets)
    assert stale["evidence"]["retried_by_client"] == len(resets)
    assert "callers saw a delay, not an error" in stale["summary"]


@pytest.mark.parametrize(
    "name", ["lost-openai", "lost-anthropic", "lost-openai-sync", "lost-anthropic-uvloop"]
)
def test_lost_fin_sdk_retries_are_stale_reuses(runs, name):
    _check_lost_fin(_result(runs, name), RUNS[name]["sdk"], GAPS_S, IDLE_S)


def test_story_numbers_lost_fin(runs):
    """LB 8 s, client keepalive_expiry=15, FINs lost: stale_keepalive at ~8 s."""
    _check_lost_fin(_result(runs, "story-lost"), "openai", STORY_GAPS_S, STORY_IDLE_S)


def test_story_numbers_visible_fin(runs):
    result = runs["story-visible"]
    closes = [s for s in result["snapshots"] if s["kind"] == FaultKind.PEER_CLOSED_IDLE.value]
    assert len(closes) == len(result["snapshots"]) == sum(1 for g in STORY_GAPS_S if g > 8)
    _check_diagnosis(result, "openai", STORY_IDLE_S)
