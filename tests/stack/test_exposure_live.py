"""Closed by default, measured on the running native stack: every socket its services listen
on is a loopback one, and Prometheus' lifecycle endpoints refuse (reload is by SIGHUP)."""

from __future__ import annotations

import re
import shutil
import subprocess
import urllib.error
import urllib.request

import pytest

from stack import control, exposure
from stack.settings import StackSettings

pytestmark = pytest.mark.stack


def _listening(pids: set[int]) -> list[tuple[str, str]]:
    """(process name, local address) of every TCP socket those processes listen on."""
    ss = shutil.which("ss")
    if ss is None:
        pytest.skip("no `ss` (iproute2) to list listening sockets")
    out = subprocess.run([ss, "-Hltnp"], capture_output=True, text=True, check=True).stdout
    found = []
    for line in out.splitlines():
        fields = line.split()
        for name, pid in re.findall(r'\("([^"]+)",pid=(\d+)', line):
            if int(pid) in pids:
                found.append((name, fields[3]))
    return found


def test_every_service_listens_on_loopback_only_by_default(stack: StackSettings) -> None:
    pids = {int(p["pid"]) for p in control.process_info(stack).values() if p.get("pid")}
    sockets = _listening(pids)
    print(f"{len(sockets)} listening sockets of {len(pids)} services: {sorted(sockets)}")
    assert len(sockets) >= 15  # what LISTENERS names, and a few ephemeral ones
    wide = [
        (name, addr) for name, addr in sockets if not exposure.is_loopback(addr.rsplit(":", 1)[0])
    ]
    assert wide == []


@pytest.mark.parametrize("endpoint", ["/-/reload", "/-/quit"])
def test_prometheus_lifecycle_endpoints_are_off(stack: StackSettings, endpoint: str) -> None:
    request = urllib.request.Request(stack.url("prometheus", "web/API", endpoint), method="POST")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=5)
    assert refused.value.code == 403
    control.reload(stack, "prometheus")  # the way that works: SIGHUP through supervisord
