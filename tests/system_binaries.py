"""The real servers tests start, from Debian's packages: find them or say what is missing.

``scripts/install-system-packages`` (run by ``scripts/test``) installs them when
it can (root or sudo, apt-get). Where it could not, a test that needs one skips
with one line naming the binary and the command that installs it. CI sets
``SEEDANCE_TEST_REQUIRE_SYSTEM=1``: there a missing binary fails the test, so a
broken install step cannot pass as a skip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

__all__ = ["require", "require_root", "stop_process"]

INSTALL_HINT = "scripts/install-system-packages (as root)"


def require(binary: str, package: str) -> str:
    """The path of ``binary`` (a name or an absolute path), or skip/fail saying how to get it."""
    found = binary if os.path.isabs(binary) and Path(binary).exists() else shutil.which(binary)
    if found is None and not os.path.isabs(binary):
        for directory in ("/usr/sbin", "/usr/bin", "/sbin"):
            candidate = Path(directory) / binary
            if candidate.exists():
                found = str(candidate)
                break
    if found is not None:
        return found
    _missing(f"{binary} is missing (Debian package {package}): run {INSTALL_HINT}")
    raise AssertionError("unreachable")  # pragma: no cover - _missing raises


def require_root(what: str) -> None:
    """Skip (fail in CI) unless root: private network namespaces and nftables need it."""
    if os.geteuid() != 0:
        _missing(f"{what} needs root (a private network namespace, nftables): run as root")


def stop_process(process: subprocess.Popen[bytes] | None, timeout_s: float = 10.0) -> None:
    """Stop a server a test started: SIGTERM, then SIGKILL if it has not gone by ``timeout_s``."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout_s)


def _missing(message: str) -> None:
    if os.environ.get("SEEDANCE_TEST_REQUIRE_SYSTEM") == "1":
        pytest.fail(message)
    pytest.skip(message)
