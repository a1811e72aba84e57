"""The dev container's configuration, read by the Dev Containers CLI (npm @devcontainers/cli, pinned in
package.json) the way an editor reads it; podman stands in for the docker CLI (docs/docker.md).

The CLI's JSONC reader is lenient (it accepts even a truncated file), so the test checks what it understood
against the compose files rather than relying on its exit status alone."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEVCONTAINER = ROOT / "node_modules" / ".bin" / "devcontainer"
CONTAINERS_CONF = ROOT / "scripts" / "containers" / "containers.conf"


def read_configuration(workspace: Path) -> subprocess.CompletedProcess[str]:
    if not DEVCONTAINER.exists():
        pytest.fail("node_modules/.bin/devcontainer missing: run `npm ci` (scripts/infra/tools.sh does)")
    podman = shutil.which("podman") or pytest.fail("podman missing (scripts/infra/containers.sh installs it)")
    return subprocess.run(  # noqa: S603
        [
            str(DEVCONTAINER), "read-configuration", "--workspace-folder", str(workspace),
            "--docker-path", podman, "--docker-compose-path", str(ROOT / ".venv" / "bin" / "podman-compose"),
        ],
        capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)},
    )  # fmt: skip


def test_devcontainer_configuration_reads_and_matches_compose() -> None:
    proc = read_configuration(ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    config = json.loads(proc.stdout)["configuration"]
    services: dict = {}
    for name in config["dockerComposeFile"]:
        services.update(yaml.safe_load((ROOT / ".devcontainer" / name).read_text())["services"])
    assert config["service"] in services
    assert set(config["runServices"]) <= set(services), set(config["runServices"]) - set(services)
    mounts = services[config["service"]]["volumes"]
    assert any(m.split(":")[1] == config["workspaceFolder"] for m in mounts), mounts
    # the ports it forwards are ones compose publishes (services, Kong, Mailpit, Kafka's default)
    for port in (8006, 8007, 8008, 8009, 8010, 8011):
        assert port in config["forwardPorts"]
