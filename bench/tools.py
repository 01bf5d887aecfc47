"""The load clients and the Collector the benchmark runs, installed on first use.

* the Collector: the native stack's own build (``stack/build.py``), cached;
* ``wrk`` (saturation): the Debian package, installed with apt-get as the stack installs its
  Debian packages;
* ``vegeta`` (fixed request rate): ``go install`` from the Go module proxy at a pinned version,
  cached under ``~/.cache/voiceobs/bin/vegeta-<version>-<hash>/`` like the stack's Go binaries.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from pathlib import Path

from stack.build import LEAN_LDFLAGS, GoBinary, _go_env, _run, find_go, go_binaries, log

VEGETA_VERSION = "12.13.0"
VEGETA_MODULE = "github.com/tsenart/vegeta/v12"


@functools.cache
def collector_binary() -> Path:
    """The stack's Collector binary (built on first use, ~3.5 min cold)."""
    return go_binaries()["collector"].build()


def _build_vegeta(binary: GoBinary, out: Path, log_file: Path) -> None:
    gobin = out.parent / "gobin"
    log(f"  go install {VEGETA_MODULE}@v{binary.version}")
    _run(
        [find_go(), "install", "-trimpath", f"-ldflags={LEAN_LDFLAGS}",
         f"{VEGETA_MODULE}@v{binary.version}"],
        cwd=Path.cwd(),
        env=_go_env({"GOBIN": str(gobin)}),
        log_file=log_file,
    )  # fmt: skip
    (gobin / "vegeta").replace(out)


@functools.cache
def vegeta() -> Path:
    """The fixed-rate load client (built on first use, ~1 min cold)."""
    return GoBinary("vegeta", VEGETA_VERSION, (), _build_vegeta, recipe=VEGETA_MODULE).build()


@functools.cache
def wrk() -> Path:
    """The saturating load client: Debian's ``wrk``, installed when missing."""
    found = shutil.which("wrk")
    if found:
        return Path(found)
    if os.geteuid() != 0:
        raise RuntimeError("wrk is not installed: run `sudo apt-get install wrk`")
    log("installing the Debian package wrk ...")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    if not any(Path("/var/lib/apt/lists").glob("*Packages*")):
        subprocess.run(["apt-get", "update", "-qq"], env=env, check=True)
    install = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "wrk"]
    if subprocess.run(install, env=env, check=False).returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], env=env, check=True)  # stale lists
        subprocess.run(install, env=env, check=True)
    found = shutil.which("wrk")
    if not found:
        raise RuntimeError("apt-get installed wrk but it is not on PATH")
    return Path(found)
