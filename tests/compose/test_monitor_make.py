"""The Docker monitoring stack: `make monitor-*` commands and compose.monitoring.yml.

The make targets are checked with DRY_RUN=1, which prints the exact commands, locally and
with REMOTE=user@host. The compose file is checked as YAML (pinned images, ports bound to
${VOICEOBS_STACK_BIND:-127.0.0.1}, health checks, named volumes, no default passwords, profiles).

The file is also loaded the way Docker loads it: with `docker compose config` when the
docker CLI has a working compose plugin, else with `composecheck/` — a few lines of Go around
compose-go, the loader `docker compose config` itself uses (schema validation, variable
interpolation, profiles, merge keys) — built with the Go toolchain. Where neither is
available (no compose plugin and no `go`), that test is skipped with this reason and the file
is validated by the YAML assertions only; the development machine has the docker CLI without
the compose plugin and no engine, so it uses composecheck.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from stack import build

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "compose.monitoring.yml"
BIND = "${VOICEOBS_STACK_BIND:-127.0.0.1}"
OTLP_BIND = "${VOICEOBS_STACK_OTLP_BIND:-127.0.0.1}"
DC = (
    "VOICEOBS_STACK_BIND=127.0.0.1 VOICEOBS_STACK_OTLP_BIND=127.0.0.1 "
    "VOICEOBS_STACK_PROMETHEUS_LIFECYCLE=--no-web.enable-lifecycle "
    "VOICEOBS_STACK_SECRETS_DIR=.state/secrets "
    "docker compose -p voiceobs-monitoring -f compose.monitoring.yml"
)
ALL = "--profile tempo --profile probes --profile host"
REMOTE = "ops@voice.example.com"
RENDER = [
    "mkdir -p .state/docker/prometheus/rules .state/docker/prometheus/scrape.d",
    "COLLECTOR_TELEMETRY_TARGET=collector:8888 "
    "PROMETHEUS_TARGET=localhost:9090 ALERTMANAGER_TARGET=alertmanager:9093 "
    "JAEGER_METRICS_TARGET=jaeger:14269 LOKI_TARGET=loki:3100 python3 stack/render.py "
    "prometheus/prometheus.yml.tmpl .state/docker/prometheus/prometheus.yml",
    "printf '\\n# Docker only (Prometheus >= 2.43): jobs of the enabled profiles.\\n"
    "scrape_config_files:\\n  - /etc/prometheus/scrape.d/*.yml\\n' "
    ">> .state/docker/prometheus/prometheus.yml",
    "rm -f .state/docker/prometheus/scrape.d/*.yml",
    "python3 stack/alertmanager_docker.py alertmanager/alertmanager.yml "
    ".state/docker/alertmanager/alertmanager.yml",
    "python3 stack/exposure.py docker .state/docker/collector/otlp.yaml",
]
SECRETS = (
    "mkdir -p .state/secrets/alertmanager && chmod 700 .state/secrets && "
    "chmod 755 .state/secrets/alertmanager && { test -s .state/secrets/grafana_admin_password "
    "|| head -c 24 /dev/urandom | base64 > .state/secrets/grafana_admin_password; } && "
    "chmod 644 .state/secrets/grafana_admin_password && "
    "mkdir -p .state/secrets/otlp && chmod 755 .state/secrets/otlp"
)
TOKEN = (
    " && { test -s .state/secrets/otlp/token || head -c 24 /dev/urandom | od -An -tx1 | "
    "tr -dc 0-9a-f > .state/secrets/otlp/token; } && chmod 644 .state/secrets/otlp/token"
)
SYNC = [
    f"ssh {REMOTE} 'mkdir -p voiceobs'",
    "rsync -az --delete --relative --exclude=secrets/ compose.monitoring.yml collector jaeger "
    "loki prometheus/rules alertmanager grafana/provisioning grafana/dashboards blackbox tempo "
    f".state/docker {REMOTE}:voiceobs/",
]
GRAFANA_AUTH = (
    'printf "user = %s:%s\\n" "${GRAFANA_ADMIN_USER:-admin}" "${GRAFANA_ADMIN_PASSWORD:-'
    '$(cat .state/secrets/grafana_admin_password)}" | curl -fsS -X POST -K -'
)
RELOAD = [
    f"{DC} kill -s HUP prometheus alertmanager collector",
    f"{GRAFANA_AUTH} http://127.0.0.1:3000/api/admin/provisioning/dashboards/reload",
    f"{GRAFANA_AUTH} http://127.0.0.1:3000/api/admin/provisioning/datasources/reload",
]


def _remote(command: str) -> str:
    return f"ssh {REMOTE} 'cd voiceobs && {command}'"


def _make_file() -> str:
    """The top-level Makefile once it includes monitor.mk, else the fragment alone."""
    makefile = ROOT / "Makefile"
    if makefile.exists() and "monitor.mk" in makefile.read_text(encoding="utf-8"):
        return "Makefile"
    return "monitor.mk"


def _dry_run(target: str, *args: str) -> list[str]:
    # Built from nothing but PATH: the expected commands are the defaults, which any
    # VOICEOBS_STACK_* or GRAFANA_* variable of the machine would change.
    env = {"PATH": os.environ["PATH"]}
    result = subprocess.run(
        ["make", "-s", "--no-print-directory", "-f", _make_file(), target, "DRY_RUN=1", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def _compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def _long_running() -> dict[str, dict[str, Any]]:
    """Services that stay up (the one-shot `init` job is excluded)."""
    return {n: s for n, s in _compose()["services"].items() if s.get("restart") != "no"}


# --- make targets --------------------------------------------------------------------------


def test_monitor_up_renders_creates_secrets_and_starts_locally() -> None:
    assert _dry_run("monitor-up") == [
        *RENDER,
        SECRETS,
        f"{DC} up -d --remove-orphans",
    ]


def test_monitor_up_with_profiles_copies_their_scrape_jobs() -> None:
    lines = _dry_run("monitor-up", "PROFILES=probes host tempo")
    assert (
        "cp blackbox/scrape-probes.yml blackbox/scrape-host.yml tempo/scrape-tempo.yml "
        ".state/docker/prometheus/scrape.d/"
    ) in lines
    assert lines[-1] == (
        f"{DC} --profile probes --profile host --profile tempo up -d --remove-orphans"
    )


def test_monitor_up_remote_syncs_configs_then_runs_over_ssh() -> None:
    assert _dry_run("monitor-up", f"REMOTE={REMOTE}") == [
        *RENDER,
        *SYNC,
        _remote(SECRETS),
        _remote(f"{DC} up -d --remove-orphans"),
    ]


def test_monitor_down_stops_every_profile_and_keeps_volumes() -> None:
    assert _dry_run("monitor-down") == [f"{DC} {ALL} down"]
    assert _dry_run("monitor-down", f"REMOTE={REMOTE}") == [_remote(f"{DC} {ALL} down")]


def test_monitor_logs_and_status() -> None:
    assert _dry_run("monitor-logs") == [f"{DC} {ALL} logs --tail=200"]
    assert _dry_run("monitor-logs", "SERVICE=collector", "FOLLOW=1", f"REMOTE={REMOTE}") == [
        _remote(f"{DC} {ALL} logs --tail=200 -f collector")
    ]
    assert _dry_run("monitor-status") == [f"{DC} {ALL} ps -a"]
    assert _dry_run("monitor-status", f"REMOTE={REMOTE}") == [_remote(f"{DC} {ALL} ps -a")]


def test_monitor_reload_signals_every_component() -> None:
    assert _dry_run("monitor-reload") == [*RENDER, *RELOAD]
    assert _dry_run("monitor-reload", f"REMOTE={REMOTE}") == [
        *RENDER,
        *SYNC,
        *map(_remote, RELOAD),
    ]


def test_monitor_targets_have_one_line_help() -> None:
    text = (ROOT / "monitor.mk").read_text(encoding="utf-8")
    for target in (
        "monitor-up",
        "monitor-down",
        "monitor-logs",
        "monitor-reload",
        "monitor-status",
    ):
        assert re.search(rf"^{target}:.*## \S", text, flags=re.MULTILINE), target


def test_dry_run_prints_no_secret_values(tmp_path: Path) -> None:
    lines = _dry_run("monitor-reload")
    assert all("GRAFANA_ADMIN_PASSWORD:-" in line for line in lines if "3000" in line)


def test_no_secret_reaches_a_command_line() -> None:
    """The Grafana password goes to curl on stdin (printf is a shell builtin), never as an
    argument a `ps` on the server would show; reloads need no lifecycle endpoint."""
    for line in _dry_run("monitor-reload"):
        for command in line.split("|"):
            if command.strip().startswith("curl"):
                assert " -u " not in command and "PASSWORD" not in command, command
        assert "/-/reload" not in line and "/-/quit" not in line


def test_bearer_auth_creates_an_otlp_token_where_the_stack_runs() -> None:
    assert _dry_run("monitor-up", "VOICEOBS_STACK_OTLP_AUTH=bearer")[len(RENDER)] == SECRETS + TOKEN
    assert _dry_run("monitor-up", "VOICEOBS_STACK_OTLP_AUTH=bearer", f"REMOTE={REMOTE}")[
        len(RENDER) + len(SYNC)
    ] == _remote(SECRETS + TOKEN)


def test_lifecycle_endpoints_only_when_asked() -> None:
    on = _dry_run("monitor-up", "VOICEOBS_STACK_ENABLE_LIFECYCLE=true")[-1]
    assert "VOICEOBS_STACK_PROMETHEUS_LIFECYCLE=--web.enable-lifecycle " in on
    command = _compose()["services"]["prometheus"]["command"]
    assert "${VOICEOBS_STACK_PROMETHEUS_LIFECYCLE:---no-web.enable-lifecycle}" in command
    assert "--web.enable-lifecycle" not in command


def test_otlp_beyond_loopback_without_token_and_tls_stops_monitor_up(tmp_path: Path) -> None:
    env = {"PATH": os.environ["PATH"], "VOICEOBS_STACK_OTLP_BIND": "0.0.0.0"}
    result = subprocess.run(
        ["make", "-s", "--no-print-directory", "-f", _make_file(), "monitor-render",
         f"MONITOR_STATE={tmp_path}"],
        cwd=ROOT, capture_output=True, text=True, env=env,
    )  # fmt: skip
    assert result.returncode != 0
    assert "VOICEOBS_STACK_OTLP_AUTH=bearer and VOICEOBS_STACK_OTLP_TLS=true" in result.stderr
    assert not (tmp_path / "collector" / "otlp.yaml").exists()


# --- compose.monitoring.yml ----------------------------------------------------------------


def test_compose_has_its_own_project_name_and_never_references_the_engine() -> None:
    data = _compose()
    assert data["name"] == "voiceobs-monitoring"
    text = COMPOSE.read_text(encoding="utf-8")
    assert "docker-compose.yml" not in text and "extends" not in data
    assert "include" not in data


def test_every_image_is_pinned_to_a_version() -> None:
    for name, service in _compose()["services"].items():
        image = service["image"]
        repo, _, tag = image.rpartition(":")
        assert repo and "/" not in tag, f"{name}: {image} has no tag"
        assert tag != "latest" and re.search(r"\d+\.\d+", tag), f"{name}: {image} is not pinned"


def test_only_grafana_and_otlp_follow_a_bind_variable_admin_ports_stay_on_loopback() -> None:
    published = 0
    for name, service in _compose()["services"].items():
        for port in service.get("ports", []):
            assert isinstance(port, str), f"{name}: {port}"
            host = {"grafana": BIND, "collector": OTLP_BIND}.get(name, "127.0.0.1")
            assert port.startswith(f"{host}:"), f"{name}: {port}"
            published += 1
    assert published >= 6
    assert _compose()["services"]["collector"]["ports"] == [
        f"{OTLP_BIND}:4317:4317",
        f"{OTLP_BIND}:4318:4318",
    ]


def test_collector_gets_the_otlp_overlay_and_its_secret_files() -> None:
    collector = _compose()["services"]["collector"]
    assert collector["command"] == [
        "--config=/etc/otelcol/config.yaml",
        "--config=/etc/voiceobs/collector/otlp.yaml",
    ]
    assert "./.state/docker/collector:/etc/voiceobs/collector:ro" in collector["volumes"]
    assert (
        "${VOICEOBS_STACK_SECRETS_DIR:-./.state/secrets}/otlp:/etc/voiceobs/otlp:ro"
        in (collector["volumes"])
    )
    env = collector["environment"]
    assert env["COLLECTOR_OTLP_TOKEN_FILE"] == "/etc/voiceobs/otlp/token"
    assert env["COLLECTOR_OTLP_TLS_CERT_FILE"] == "/etc/voiceobs/otlp/tls.crt"
    assert env["COLLECTOR_OTLP_TLS_KEY_FILE"] == "/etc/voiceobs/otlp/tls.key"


def test_every_long_running_service_has_a_health_check_restart_and_resource_limits() -> None:
    for name, service in _long_running().items():
        check = service.get("healthcheck", {})
        assert check.get("test") and not check.get("disable"), f"{name}: no health check"
        assert service["restart"] == "unless-stopped", name
        assert re.fullmatch(r"\d+[mg]", str(service.get("mem_limit", ""))), name
        assert 0 < float(service.get("cpus", 0)) <= 2, f"{name}: no CPU limit"
        assert 0 < int(service.get("pids_limit", 0)) <= 1024, f"{name}: no pids limit"


def test_host_exporters_see_the_host_without_privilege() -> None:
    services = _compose()["services"]
    node = services["node-exporter"]
    # The host's network namespace, or the network collectors report the container's.
    assert node["network_mode"] == "host" and node["pid"] == "host"
    assert not any("0.0.0.0" in arg for arg in node["command"])
    cadvisor = services["cadvisor"]
    assert not cadvisor.get("privileged") and not cadvisor.get("devices")


def test_health_checks_use_the_shared_static_busybox() -> None:
    """Collector, Loki and Tempo images have no shell or wget: checks use /hc/busybox."""
    for name, service in _long_running().items():
        assert service["healthcheck"]["test"][:2] == ["CMD", "/hc/busybox"], name
        targets = [v["target"] if isinstance(v, dict) else v for v in service["volumes"]]
        assert "/hc" in targets, f"{name} does not mount the health-check tools"
        assert service["depends_on"]["init"]["condition"] == "service_completed_successfully"


def test_data_lives_in_named_volumes() -> None:
    data = _compose()
    declared = set(data["volumes"])
    for service in ("prometheus", "jaeger", "loki", "alertmanager", "grafana", "collector"):
        sources = [
            (v["source"] if isinstance(v, dict) else v.split(":")[0])
            for v in data["services"][service]["volumes"]
        ]
        assert any(s in declared for s in sources), f"{service} keeps no data in a named volume"


def test_no_default_passwords_and_anonymous_access_off() -> None:
    grafana = _compose()["services"]["grafana"]
    env = grafana["environment"]
    assert "GF_SECURITY_ADMIN_PASSWORD" not in env
    assert env["GF_SECURITY_ADMIN_PASSWORD__FILE"] == "/run/secrets/grafana_admin_password"
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    assert "grafana_admin_password" in grafana["secrets"]
    text = COMPOSE.read_text(encoding="utf-8").lower()
    assert not re.search(r"password\s*[:=]\s*\S*(admin|secret|changeme|password)", text)


def test_grafana_gets_its_provisioning_and_datasource_urls() -> None:
    grafana = _compose()["services"]["grafana"]
    volumes = grafana["volumes"]
    assert "./grafana/provisioning:/etc/grafana/provisioning:ro" in volumes
    assert "./grafana/dashboards:/var/lib/grafana/dashboards:ro" in volumes
    for var in ("PROMETHEUS_URL", "JAEGER_URL", "LOKI_URL", "TEMPO_URL", "ALERTMANAGER_URL"):
        assert grafana["environment"][var].startswith("http://"), var


def test_prometheus_receives_remote_write_and_keeps_exemplars() -> None:
    command = _compose()["services"]["prometheus"]["command"]
    assert "--enable-feature=exemplar-storage" in command
    assert "--web.enable-remote-write-receiver" in command  # engine metrics are pushed


def test_collector_pushes_to_prometheus_and_reaches_backends_by_service_name() -> None:
    env = _compose()["services"]["collector"]["environment"]
    assert env["PROMETHEUS_REMOTE_WRITE_ENDPOINT"] == "http://prometheus:9090/api/v1/write"
    assert env["JAEGER_OTLP_ENDPOINT"] == "jaeger:14317"
    assert env["LOKI_OTLP_ENDPOINT"] == "http://loki:3100/otlp"


def test_every_env_variable_of_the_shared_configs_is_set_for_docker() -> None:
    """Each ${env:VAR} / ${VAR} a shared config reads is given by its service (no native default)."""
    services = _compose()["services"]
    for service, config in (("collector", "collector/config.yaml"), ("jaeger", "jaeger/config.yaml"),
                            ("loki", "loki/config.yaml")):  # fmt: skip
        lines = (ROOT / config).read_text(encoding="utf-8").splitlines()
        text = "\n".join(line for line in lines if not line.lstrip().startswith("#"))
        wanted = set(re.findall(r"\$\{(?:env:)?([A-Z][A-Z0-9_]*)", text))
        wanted -= {"DEPLOYMENT_ENVIRONMENT"} if service != "collector" else set()
        missing = wanted - set(services[service].get("environment", {}))
        assert not missing, f"{service}: {sorted(missing)} keep their native (127.0.0.1) default"


def test_loki_expands_env_and_uses_the_shared_config() -> None:
    loki = _compose()["services"]["loki"]
    assert "-config.expand-env=true" in loki["command"]
    assert "-config.file=/etc/loki/config.yaml" in loki["command"]


def test_optional_services_sit_in_profiles() -> None:
    services = _compose()["services"]
    assert services["tempo"]["profiles"] == ["tempo"]
    assert services["blackbox"]["profiles"] == ["probes"]
    assert services["node-exporter"]["profiles"] == ["host"]
    assert services["cadvisor"]["profiles"] == ["host"]
    core = {"collector", "prometheus", "jaeger", "loki", "alertmanager", "grafana"}
    assert all("profiles" not in services[name] for name in core)


def test_mounted_config_files_exist() -> None:
    for name, service in _compose()["services"].items():
        for volume in service.get("volumes", []):
            if isinstance(volume, str) and volume.startswith("./") and ".state" not in volume:
                assert (ROOT / volume.split(":")[0]).exists(), f"{name}: {volume}"


def test_rendered_prometheus_config_and_profile_jobs_pass_promtool(tmp_path: Path) -> None:
    """The Docker render of the shared template, plus every profile's jobs, is valid config.

    The profiles' jobs are merged into scrape_configs for the check (the image loads them
    through the scrape_config_files glob), so one check sees every job name at once.
    """
    promtool = str(build.promtool())
    env = dict(os.environ)
    render = RENDER[1].split(" python3 ")[0].split()
    env.update(dict(item.split("=", 1) for item in render))
    out = tmp_path / "prometheus.yml"
    subprocess.run(
        ["python3", "stack/render.py", "prometheus/prometheus.yml.tmpl", str(out)],
        cwd=ROOT, env=env, check=True,
    )  # fmt: skip
    config = yaml.safe_load(out.read_text(encoding="utf-8"))
    for jobs in (
        "blackbox/scrape-probes.yml",
        "blackbox/scrape-host.yml",
        "tempo/scrape-tempo.yml",
    ):
        config["scrape_configs"] += yaml.safe_load((ROOT / jobs).read_text())["scrape_configs"]
    (tmp_path / "rules").symlink_to(ROOT / "prometheus" / "rules")
    out.write_text(yaml.safe_dump(config), encoding="utf-8")
    result = subprocess.run([promtool, "check", "config", str(out)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    names = [job["job_name"] for job in config["scrape_configs"]]
    assert len(names) == len(set(names)), "duplicate job names"


def _compose_plugin_works() -> bool:
    docker = shutil.which("docker")
    if docker is None:
        return False
    probe = subprocess.run([docker, "compose", "version"], capture_output=True, text=True)
    return probe.returncode == 0


@pytest.fixture(scope="session")
def compose_loader(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """A command that loads and validates a compose file: docker compose, else composecheck."""
    if _compose_plugin_works():
        return ["docker", "compose", "-f", str(COMPOSE), "config", "--quiet"]
    go = shutil.which("go")
    if go is None:
        pytest.skip("neither a docker compose plugin nor Go: compose file checked as YAML only")
    binary = tmp_path_factory.mktemp("composecheck") / "composecheck"
    source = Path(__file__).resolve().parent / "composecheck"
    build = subprocess.run(
        [go, "build", "-o", str(binary), "."], cwd=source, capture_output=True, text=True
    )
    assert build.returncode == 0, build.stderr
    return [str(binary), str(COMPOSE)]


@pytest.mark.parametrize("profiles", [[], ["tempo", "probes", "host"]], ids=["core", "all"])
def test_compose_file_loads_like_docker_loads_it(
    compose_loader: list[str], profiles: list[str], tmp_path: Path
) -> None:
    secrets = tmp_path / "secrets"
    (secrets / "alertmanager").mkdir(parents=True)
    (secrets / "grafana_admin_password").write_text("test")
    # Built from nothing but PATH and HOME (docker's config): the assertions are about the
    # defaults (ports on 127.0.0.1), which the machine's VOICEOBS_STACK_BIND would change.
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/")}
    env["VOICEOBS_STACK_SECRETS_DIR"] = str(secrets)
    if compose_loader[0] == "docker":
        command = [*compose_loader[:4], *(f"--profile={p}" for p in profiles), "config", "--quiet"]
    else:
        command = [*compose_loader, *profiles]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    if compose_loader[0] != "docker":
        project = yaml.safe_load(result.stdout)
        assert set(project["services"]) >= {"collector", "prometheus", "grafana", "init"}
        assert ("tempo" in project["services"]) == ("tempo" in profiles)
        ports = [p for s in project["services"].values() for p in s.get("ports", [])]
        assert ports and all(p["host_ip"] == "127.0.0.1" for p in ports)


def test_architecture_doc_lists_the_pinned_images() -> None:
    """docs/architecture.md's version table stays in step with the compose file."""
    doc = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    for name, service in _compose()["services"].items():
        assert f"`{service['image']}`" in doc, f"{name}: {service['image']} not in the doc"
