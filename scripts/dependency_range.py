"""Run the unit suite at both ends of the dependency ranges ``pyproject.toml`` allows.

voiceobs lives inside the user's engine, so it declares ranges, not pins; this checks that both
ends of each range really work. Two throwaway virtual environments under
``~/.cache/voiceobs/dependency-range`` (pip's own cache keeps the wheels between runs):

- ``lowest``: every runtime dependency at its declared lower bound (a pip constraints file
  generated from ``pyproject.toml``); whatever those versions pull in resolves as pip likes.
- ``highest``: a fresh install, so the newest versions the ranges allow.

Usage: ``python scripts/dependency_range.py [lowest|highest ...]`` (both by default).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path.home() / ".cache" / "voiceobs" / "dependency-range"
REPORTED = (
    "opentelemetry-sdk",
    "opentelemetry-instrumentation-fastapi",
    "fastapi",
    "pydantic",
    "pipecat-ai",
)
"""Packages whose installed versions each run prints, so the log says what was tested."""
EXTRAS = {"lowest": "dev,pipecat", "highest": "dev,pipecat,livekit"}
"""The framework adapters' extras, so their tests run too. livekit-agents pins OpenTelemetry
1.45.x and cannot install beside our 1.43 lower bound: the lowest end leaves it out, and its
tests with it."""
SKIPPED_TESTS = {
    "lowest": [
        "--ignore=tests/test_integration_livekit.py",
        "--deselect=tests/test_docs.py::test_code_example_runs[docs/integrations.md#2]",
    ],
    "highest": [],
}
"""The LiveKit adapter's tests and its docs example, at the lowest end only."""

_LOWER_BOUND = re.compile(r"^\s*([A-Za-z0-9_.\-\[\]]+)\s*(?:>=|~=|==)\s*([^,;\s]+)")


def lower_bounds(pyproject: Path) -> list[str]:
    """``name==version`` for every runtime dependency's lower bound."""
    dependencies = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    pins = []
    for requirement in dependencies:
        match = _LOWER_BOUND.match(requirement)
        if match is None:
            raise SystemExit(f"dependency {requirement!r} has no lower bound; give it one (>=)")
        name = match.group(1).split("[", 1)[0]
        pins.append(f"{name}=={match.group(2)}")
    return pins


def run(command: list[str]) -> None:
    print("+", " ".join(command), flush=True)
    subprocess.run(command, check=True)


def check(end: str) -> bool:
    """Build the ``end`` environment from scratch and run the unit suite in it."""
    venv = CACHE / end
    shutil.rmtree(venv, ignore_errors=True)
    run([sys.executable, "-m", "venv", str(venv)])
    python = str(venv / "bin" / "python")
    install = [python, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    if end == "lowest":
        constraints = venv / "constraints.txt"
        constraints.write_text("\n".join(lower_bounds(ROOT / "pyproject.toml")) + "\n")
        install += ["-c", str(constraints)]
    run([*install, "-e", f"{ROOT}[{EXTRAS[end]}]"])
    versions = subprocess.run(
        [python, "-m", "pip", "show", *REPORTED], capture_output=True, text=True, check=True
    ).stdout
    shown = re.findall(r"^Name: (.+)\nVersion: (.+)$", versions, re.MULTILINE)
    print(f"{end}: " + ", ".join(f"{name} {version}" for name, version in shown), flush=True)
    pytest = [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not stack"]
    tests = subprocess.run(
        [*pytest, *SKIPPED_TESTS[end], "tests"],
        cwd=ROOT,
    )
    return tests.returncode == 0


def main(argv: list[str]) -> int:
    ends = argv or ["lowest", "highest"]
    unknown = sorted(set(ends) - {"lowest", "highest"})
    if unknown:
        raise SystemExit(f"unknown range end(s) {', '.join(unknown)}; allowed: lowest, highest")
    failed = []
    for end in ends:
        began = time.monotonic()
        ok = check(end)
        print(f"{end}: {'passed' if ok else 'FAILED'} in {time.monotonic() - began:.0f} s")
        if not ok:
            failed.append(end)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
