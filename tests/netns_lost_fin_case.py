"""Idle timeouts whose FIN never arrives, run inside a private network namespace.

``tests/test_diagnosis_real_peers.py`` runs this file under ``unshare -n``
(as root): the namespace has its own loopback and its own nftables ruleset,
both gone with the process. nginx closes connections idle for 1 s; an
nftables rule drops every FIN it sends, so the clients never learn of the
close and their next request on the connection meets a RST. Prints one JSON
object: the ports per library, the snapshots recorded, and how many FINs the
rule dropped.

Usage: netns_lost_fin_case.py NGINX NFT IP WORKDIR
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from real_peers import Nginx  # noqa: E402

import seedance_otel  # noqa: E402

from diagnosis_workload import OK_FRACTIONS, Lane, run_lanes  # noqa: E402

TIMEOUT_S = 1.0
LIBRARIES = ("aiohttp", "httpx")


def main() -> None:
    nginx_binary, nft, ip, workdir = sys.argv[1:5]
    subprocess.run([ip, "link", "set", "lo", "up"], check=True, timeout=30)
    nginx = Nginx(nginx_binary, Path(workdir), http="keepalive_timeout 1s;", ports=2)
    ports = dict(zip(LIBRARIES, nginx.ports))
    sports = ", ".join(str(port) for port in nginx.ports)
    ruleset = (
        "table inet lostfin {\n"
        "  chain out {\n"
        "    type filter hook output priority 0; policy accept;\n"
        f"    tcp sport {{ {sports} }} tcp flags & fin == fin counter drop\n"
        "  }\n"
        "}\n"
    )
    subprocess.run([nft, "-f", "-"], input=ruleset, text=True, check=True, timeout=30)
    seedance_otel.instrument(exporter="none", strict=True)
    lanes = [
        Lane(library, f"http://127.0.0.1:{port}", fraction * TIMEOUT_S)
        for library, port in ports.items()
        for fraction in (*OK_FRACTIONS, 1.3, 1.6)
    ]
    with nginx:
        results = run_lanes(lanes)
    counters = subprocess.run(
        [nft, "-j", "list", "table", "inet", "lostfin"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    dropped = 0
    for item in json.loads(counters.stdout)["nftables"]:
        rule = item.get("rule")
        for expression in rule["expr"] if rule else ():
            if "counter" in expression:
                dropped += expression["counter"]["packets"]
    print(
        json.dumps(
            {
                "ports": ports,
                "results": [[str(r) for r in result] for result in results],
                "snapshots": [s.to_dict() for s in seedance_otel.snapshots()],
                "fins_dropped": dropped,
            }
        )
    )


if __name__ == "__main__":
    main()
