"""Build or install the stack's binaries, pinned, with ordinary Go and apt tooling.

* The OpenTelemetry Collector is built by the Collector builder (ocb) from
  ``collector/builder-config.yaml``.
* Jaeger v2 and Loki 3 are built from their Go modules through our build modules
  in ``stack/gomod/<name>/`` (they repeat the upstream replace directives that
  ``go install module@version`` refuses).
* Alertmanager and amtool are built with ``go install`` at the version of the image
  compose.monitoring.yml pins (Debian's 0.25 lacks ``url_file`` on webhooks, which the
  dead man's switch needs).
* Prometheus 3 and promtool are built the same way from the Go module
  ``github.com/prometheus/prometheus`` (v0.3XX.Y is Prometheus 3.XX.Y), at the version of
  the image the compose file pins, without the web UI's assets (the API is all the stack
  uses) and with only the static and file service discoveries.
* Chromium and its driver (the console's browser test) come from Debian packages.

Go binaries are cached under ``${XDG_CACHE_HOME:-~/.cache}/voiceobs/bin/
<name>-<version>-<hash>/`` where the hash covers the manifest or build module, so
a second run reuses them. The Go module and build caches stay in Go's defaults.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from stack.settings import REPO_ROOT, StackError

GO_PARALLELISM = "2"
"""`go build -p`: modest, so one build does not thrash a small machine."""

LEAN_LDFLAGS = "-s -w"


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "voiceobs"


def log(message: str) -> None:
    print(f"[stack-build] {message}", flush=True)


def find_go() -> str:
    """The ``go`` command; Go's own toolchain switching (GOTOOLCHAIN=auto,
    fetched from the module proxy) covers modules needing a newer Go."""
    found = shutil.which("go")
    if found:
        return found
    if Path("/usr/local/go/bin/go").exists():
        return "/usr/local/go/bin/go"
    raise StackError("Go is not installed (no `go` on PATH nor /usr/local/go/bin/go)")


def _go_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["CGO_ENABLED"] = "0"
    env.setdefault("GOTOOLCHAIN", "auto")
    env.setdefault("GOFLAGS", f"-p={GO_PARALLELISM}")
    if extra:
        env.update(extra)
    return env


def _run(cmd: Sequence[str], cwd: Path, env: Mapping[str, str], log_file: Path) -> None:
    """Run a build step with its output in ``log_file``; on failure show the tail."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("a", encoding="utf-8") as out:
        out.write(f"\n$ {' '.join(cmd)}\n")
        out.flush()
        proc = subprocess.run(cmd, cwd=cwd, env=dict(env), stdout=out, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        tail = log_file.read_text(encoding="utf-8", errors="replace").splitlines()[-25:]
        raise StackError(
            f"build step failed ({' '.join(cmd[:3])} ...), exit {proc.returncode}; "
            f"full log: {log_file}\n" + "\n".join(tail)
        )


def _digest(paths: Sequence[Path], extra: str = "") -> str:
    h = hashlib.sha256(extra.encode())
    for path in paths:
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:12]


@dataclass(frozen=True)
class GoBinary:
    """A Go binary built from pinned inputs in this repository."""

    name: str
    version: str
    inputs: tuple[Path, ...]
    builder: Callable[[GoBinary, Path, Path], None] = field(compare=False)
    recipe: str = ""  # build flags beyond the inputs; part of the cache key

    @property
    def key(self) -> str:
        return f"{self.name}-{self.version}-{_digest(self.inputs, LEAN_LDFLAGS + self.recipe)}"

    @property
    def path(self) -> Path:
        return cache_root() / "bin" / self.key / self.name

    def build(self) -> Path:
        """Build unless cached; return the binary's path."""
        if self.path.exists():
            log(f"{self.name} {self.version}: cached at {self.path}")
            return self.path
        log(f"{self.name} {self.version}: building (cold builds take minutes) ...")
        started = time.monotonic()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        log_file = cache_root() / "logs" / f"{self.key}.log"
        with tempfile.TemporaryDirectory(prefix=f"{self.name}-", dir=self.path.parent) as tmp:
            out = Path(tmp) / self.name
            self.builder(self, out, log_file)
            out.replace(self.path)
        size = self.path.stat().st_size / 2**20
        elapsed = time.monotonic() - started
        log(f"{self.name}: built in {elapsed:.0f}s, {size:.0f} MiB -> {self.path}")
        return self.path


def _module_version(go_mod: Path, module: str) -> str:
    match = re.search(rf"^\s*(?:require\s+)?{re.escape(module)} v(\S+)", go_mod.read_text(), re.M)
    if not match:
        raise StackError(f"{go_mod} does not require {module}")
    return match.group(1)


# --- the Collector (ocb) ---------------------------------------------------

COLLECTOR_MANIFEST = REPO_ROOT / "collector" / "builder-config.yaml"
BUILDER_MODULE = "go.opentelemetry.io/collector/cmd/builder"


def _collector_version() -> str:
    match = re.search(
        r"go\.opentelemetry\.io/collector/\S+ v(0\.\d+\.\d+)", COLLECTOR_MANIFEST.read_text()
    )
    if not match:
        raise StackError(f"no core component version found in {COLLECTOR_MANIFEST}")
    return match.group(1)


def _build_collector(binary: GoBinary, out: Path, log_file: Path) -> None:
    go = find_go()
    builder_dir = cache_root() / "bin" / f"ocb-{binary.version}"
    builder = builder_dir / "builder"
    if not builder.exists():
        log(f"  installing the Collector builder v{binary.version}")
        _run(
            [go, "install", f"{BUILDER_MODULE}@v{binary.version}"],
            cwd=REPO_ROOT,
            env=_go_env({"GOBIN": str(builder_dir)}),
            log_file=log_file,
        )
    work = out.parent / "ocb"
    work.mkdir()
    # `-e` lets the builder's `go mod tidy` pass when a module that only the
    # components' *tests* import is not served by the proxy; `go build` ignores it.
    # ocb builds with -trimpath and -ldflags="-s -w", CGO off, by default.
    log("  generating sources and compiling (ocb)")
    _run(
        [str(builder), "--config", str(COLLECTOR_MANIFEST)],
        cwd=work,
        env=_go_env({"GOFLAGS": f"-e -p={GO_PARALLELISM}"}),
        log_file=log_file,
    )
    (work / "_build" / binary.name).replace(out)
    shutil.rmtree(work, ignore_errors=True)


# --- Jaeger and Loki (our build modules) ------------------------------------


@dataclass(frozen=True)
class _ModuleBuild:
    package: str
    tags: str = ""
    ldflags: str = ""


def _gomod_binary(name: str, version: str, go_mod: Path, spec: _ModuleBuild) -> GoBinary:
    return GoBinary(
        name,
        version,
        (go_mod, go_mod.with_name("go.sum")),
        _gomod_builder(spec),
        recipe=f"{spec.package} {spec.tags} {spec.ldflags}",
    )


def _gomod_builder(spec: _ModuleBuild) -> Callable[[GoBinary, Path, Path], None]:
    def build(binary: GoBinary, out: Path, log_file: Path) -> None:
        module_dir = binary.inputs[0].parent
        cmd = [find_go(), "build", "-mod=readonly", "-trimpath"]
        if spec.tags:
            cmd += ["-tags", spec.tags]
        cmd += ["-ldflags", f"{LEAN_LDFLAGS} {spec.ldflags}".strip(), "-o", str(out), spec.package]
        log(f"  go build {spec.package}")
        _run(cmd, cwd=module_dir, env=_go_env(), log_file=log_file)

    return build


JAEGER_MOD = REPO_ROOT / "stack" / "gomod" / "jaeger" / "go.mod"
LOKI_MOD = REPO_ROOT / "stack" / "gomod" / "loki" / "go.mod"


# --- Alertmanager (go install) ----------------------------------------------

ALERTMANAGER_VERSION = "0.28.1"
"""Alertmanager and amtool: the version of compose.monitoring.yml's image (a test checks)."""


def _install_server_and_tool(
    binary: GoBinary,
    out: Path,
    log_file: Path,
    *,
    module: str,
    version: str,
    names: tuple[str, str],
    tags: str = "",
) -> None:
    """``go install`` of ``module``'s server and tool commands (``names``) at ``version``:
    the server into ``out``, the tool beside the cached binary."""
    server, tool = names
    gobin = out.parent / "gobin"
    log(f"  go install {server}, {tool} v{version}")
    _run(
        [find_go(), "install", "-trimpath", *(["-tags", tags] if tags else []),
         f"-ldflags={LEAN_LDFLAGS} {binary.recipe}",
         f"{module}/{server}@v{version}", f"{module}/{tool}@v{version}"],
        cwd=REPO_ROOT,
        env=_go_env({"GOBIN": str(gobin)}),
        log_file=log_file,
    )  # fmt: skip
    (gobin / tool).replace(binary.path.with_name(tool))
    (gobin / server).replace(out)


def _build_alertmanager(binary: GoBinary, out: Path, log_file: Path) -> None:
    """alertmanager into ``out``, amtool beside the cached binary (validation, routes)."""
    _install_server_and_tool(
        binary,
        out,
        log_file,
        module="github.com/prometheus/alertmanager/cmd",
        version=binary.version,
        names=("alertmanager", "amtool"),
    )


# --- Prometheus and promtool (go install) -----------------------------------

PROMETHEUS_VERSION = "3.16.0"
"""Prometheus and promtool: the version of compose.monitoring.yml's image (a test checks)."""


def prometheus_module_version(version: str) -> str:
    """The Go module's version of a Prometheus release: 3.16.0 is v0.316.0."""
    major, minor, patch = (int(part) for part in version.split("."))
    return f"0.{major * 100 + minor}.{patch}"


def _build_prometheus(binary: GoBinary, out: Path, log_file: Path) -> None:
    """prometheus into ``out``, promtool beside the cached binary (config and rule tests)."""
    _install_server_and_tool(
        binary,
        out,
        log_file,
        module="github.com/prometheus/prometheus/cmd",
        version=prometheus_module_version(binary.version),
        names=("prometheus", "promtool"),
        tags="netgo,remove_all_sd",
    )


def promtool() -> Path:
    """promtool of the stack's Prometheus build (built on first use)."""
    return go_binaries()["prometheus"].build().with_name("promtool")


# --- all Go binaries ---------------------------------------------------------


def go_binaries() -> dict[str, GoBinary]:
    """The Go-built services, keyed by service name."""
    collector_version = _collector_version()
    loki_version = _module_version(LOKI_MOD, "github.com/grafana/loki/v3")
    loki_build = "github.com/grafana/loki/v3/pkg/util/build"
    jaeger_version = "github.com/jaegertracing/jaeger/internal/version"
    prom_version = "github.com/prometheus/common/version"
    return {
        "collector": GoBinary(
            "otelcol-voiceobs", collector_version, (COLLECTOR_MANIFEST,), _build_collector
        ),
        "jaeger": _gomod_binary(
            "jaeger",
            _module_version(JAEGER_MOD, "github.com/jaegertracing/jaeger"),
            JAEGER_MOD,
            _ModuleBuild(
                "github.com/jaegertracing/jaeger/cmd/jaeger",
                # v1.76.0 of the module is Jaeger v2.13.0 (dual tags).
                ldflags=f"-X {jaeger_version}.latestVersion=v2.13.0",
            ),
        ),
        "alertmanager": GoBinary(
            "alertmanager",
            ALERTMANAGER_VERSION,
            (),
            _build_alertmanager,
            # version and build_info as upstream's release build sets them
            recipe=(
                f"-X {prom_version}.Version={ALERTMANAGER_VERSION} "
                f"-X {prom_version}.Branch=voiceobs"
            ),
        ),
        "prometheus": GoBinary(
            "prometheus",
            PROMETHEUS_VERSION,
            (),
            _build_prometheus,
            recipe=(
                f"-X {prom_version}.Version={PROMETHEUS_VERSION} -X {prom_version}.Branch=voiceobs"
            ),
        ),
        "loki": _gomod_binary(
            "loki",
            loki_version,
            LOKI_MOD,
            _ModuleBuild(
                "github.com/grafana/loki/v3/cmd/loki",
                tags="netgo",
                ldflags=f"-X {loki_build}.Version={loki_version} -X {loki_build}.Branch=voiceobs",
            ),
        ),
    }


# --- Debian packages ------------------------------------------------------------

DEBIAN_PACKAGES = {
    # The console page's browser test (tests/stack/test_api_console_browser.py) drives it.
    "chromium": ("chromium",),
    "chromium-driver": ("chromedriver",),
}


def install_debian_packages() -> None:
    """apt-get install the packages whose commands are missing, without letting
    their maintainer scripts start system services (our instances use our
    configs and ports)."""
    missing = [
        pkg for pkg, cmds in DEBIAN_PACKAGES.items() if not all(shutil.which(c) for c in cmds)
    ]
    if not missing:
        log(f"Debian packages {', '.join(DEBIAN_PACKAGES)}: installed")
        return
    if os.geteuid() != 0:
        raise StackError(
            f"missing Debian packages {missing}: run `sudo apt-get install {' '.join(missing)}`"
        )
    log(f"installing Debian packages {' '.join(missing)} ...")
    started = time.monotonic()
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive", RUNLEVEL="1")
    policy = Path("/usr/sbin/policy-rc.d")
    created_policy = False
    if not policy.exists():
        policy.write_text("#!/bin/sh\n# voiceobs stack-build: do not start services\nexit 101\n")
        policy.chmod(0o755)
        created_policy = True
    try:
        lists = Path("/var/lib/apt/lists")
        if not any(lists.glob("*Packages*")):
            subprocess.run(["apt-get", "update", "-qq"], env=env, check=True)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
            env=env,
            check=True,
        )
    except subprocess.CalledProcessError as exc:
        raise StackError(f"apt-get failed ({exc}); install {' '.join(missing)} by hand") from exc
    finally:
        if created_policy:
            policy.unlink(missing_ok=True)
    log(f"Debian packages installed in {time.monotonic() - started:.0f}s")


def build_all(only: Sequence[str] = ()) -> dict[str, Path]:
    """Build/install everything (or the services in ``only``); print timings."""
    known = set(go_binaries())
    unknown = set(only) - known
    if unknown:
        raise StackError(f"unknown service(s) {sorted(unknown)}; choose from {sorted(known)}")
    started = time.monotonic()
    go = find_go()
    log(subprocess.run([go, "version"], capture_output=True, text=True, check=False).stdout.strip())
    paths: dict[str, Path] = {}
    for service, binary in go_binaries().items():
        if not only or service in only:
            paths[service] = binary.build()
    if not only:
        install_debian_packages()
    log(f"done in {time.monotonic() - started:.0f}s")
    return paths


def missing_binaries() -> list[str]:
    """Services whose binary is not there yet."""
    missing = [s for s, b in go_binaries().items() if not b.path.exists()]
    for pkg, cmds in DEBIAN_PACKAGES.items():
        if not all(shutil.which(c) for c in cmds):
            missing.append(pkg)
    return missing


if __name__ == "__main__":
    try:
        build_all(sys.argv[1:])
    except StackError as exc:
        print(f"stack-build: {exc}", file=sys.stderr)
        sys.exit(1)
