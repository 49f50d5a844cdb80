"""The deployment files are checked the ways possible without a Docker engine: the compose file
against the compose specification and for dangling references, the nginx config with `nginx -t`
(``test_nginx.py`` runs it in front of the API), and the Dockerfile's COPY sources."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest
import yaml

from fwa_pipeline.compute.dask import ALLOWED_FAILURES, NO_WORKERS_TIMEOUT
from fwa_pipeline.settings import Settings, environment_variables

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
INTERPOLATION = re.compile(r"\$\{([A-Z0-9_]+)(?::?[-?][^}]*)?\}")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def test_compose_validates_against_the_compose_specification() -> None:
    tool = Path(sys.executable).with_name("check-jsonschema")
    result = subprocess.run(
        [str(tool), "--builtin-schema", "vendor.compose-spec", str(COMPOSE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_reference_in_compose_resolves(compose: dict) -> None:
    services = compose["services"]
    volumes = set(compose.get("volumes", {}))
    configs = set(compose.get("configs", {}))
    networks = set(compose.get("networks", {}))
    for name, service in services.items():
        for target in service.get("depends_on", {}):
            assert target in services, f"{name} depends on unknown service {target}"
        for mount in service.get("volumes", []):
            source = mount.split(":", 1)[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"
            else:
                assert source in volumes, f"{name} uses undeclared volume {source}"
        for config in service.get("configs", []):
            assert config["source"] in configs
        for network in service.get("networks", []):
            assert network in networks


def test_every_environment_variable_is_known(compose: dict) -> None:
    setting_names = environment_variables()
    dagster_yaml = (ROOT / "dagster_home" / "production" / "dagster.yaml").read_text()
    documented = {
        line.split("=", 1)[0]
        for line in (ROOT / ".env.example").read_text().splitlines()
        if "=" in line and not line.startswith("#")
    }
    for name, service in compose["services"].items():
        for var in service.get("environment", {}):
            if var.startswith("FWA_"):
                assert var in setting_names, f"{name}: {var} is not a setting"
            elif var.startswith("DAGSTER_PG_"):
                assert var in dagster_yaml, f"{name}: {var} is unused by dagster.yaml"
    for var in INTERPOLATION.findall(COMPOSE.read_text()):
        assert var in documented, f"${{{var}}} is not documented in .env.example"


def test_every_service_command_is_provided_by_the_project(compose: dict) -> None:
    from fwa_api.cli import cli

    for name, service in compose["services"].items():
        command = service.get("command")
        if not command or not service.get("build"):
            continue
        program, *args = command
        if program == "fwa":
            context = click.Context(cli)
            group: click.Command = cli
            words = [a for a in args if not a.startswith("-")]
            for word in words:
                if not isinstance(group, click.Group):
                    break
                sub = group.get_command(context, word)
                assert sub is not None, f"{name}: `fwa {' '.join(words)}` does not exist"
                group = sub
        else:
            assert Path(sys.executable).with_name(program).exists(), f"{name}: no {program}"
            assert "workspace.yaml" not in args or (ROOT / "workspace.yaml").exists()


def test_the_runs_compute_on_the_compose_dask_cluster(compose: dict) -> None:
    services = compose["services"]
    scheduler, worker, daemon = (
        services[name] for name in ("dask-scheduler", "dask-worker", "dagster-daemon")
    )
    # The daemon launches the runs: they reach the scheduler at the port it serves.
    address = daemon["environment"]["FWA_DASK_SCHEDULER_ADDRESS"]
    settings = Settings(dask_scheduler_address=address, _env_file=None)
    assert settings.compute == "dask"
    assert address == "tcp://dask-scheduler:8786"
    assert scheduler["command"][:2] == ["dask", "scheduler"]
    assert scheduler["command"][scheduler["command"].index("--port") + 1] == "8786"
    assert daemon["depends_on"]["dask-scheduler"] == {"condition": "service_healthy"}
    # Workers connect to it, one process each, threads and memory from the environment.
    command = worker["command"]
    assert command[:3] == ["dask", "worker", address]
    assert command[command.index("--nworkers") + 1] == "1"
    assert command[command.index("--nthreads") + 1] == "${FWA_DASK_WORKER_THREADS:-1}"
    assert command[command.index("--memory-limit") + 1] == "${FWA_DASK_WORKER_MEMORY:-3GB}"
    # Workers read their shards of claims from the store and write shard files to the data
    # directory the runs read them from.
    assert set(services["postgres"]["networks"]) <= set(worker["networks"])
    for dask in (scheduler, worker):
        # The app's image (the task functions), its data directory, none of its secrets.
        assert (dask["build"], dask["image"]) == (daemon["build"], daemon["image"])
        assert dask["volumes"] == daemon["volumes"]
        assert not [v for v in dask.get("environment", {}) if v.startswith(("FWA_", "DAGSTER"))]
        # The limits a run's own cluster sets (compute.dask), for the shared scheduler.
        limits = {
            "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": str(ALLOWED_FAILURES),
            "DASK_DISTRIBUTED__SCHEDULER__NO_WORKERS_TIMEOUT": NO_WORKERS_TIMEOUT,
        }
        assert {k: dask["environment"][k] for k in limits} == limits
    # The dashboard is for operators only, on the host's loopback.
    assert scheduler["ports"] == ["127.0.0.1:8787:8787"]


def test_dockerfile_copies_only_what_exists() -> None:
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (ROOT / source).exists(), f"Dockerfile copies missing {source}"


@pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is installed by .ci/run")
def test_nginx_config_passes_nginx_t(tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    certs.mkdir()
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            str(certs / "privkey.pem"),
            "-out",
            str(certs / "fullchain.pem"),
            "-days",
            "1",
        ],
        check=True,
        capture_output=True,
    )
    config = tmp_path / "nginx.conf"
    shutil.copy(ROOT / "nginx" / "nginx.conf", config)
    result = subprocess.run(
        ["nginx", "-t", "-c", str(config), "-p", f"{tmp_path}/"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
