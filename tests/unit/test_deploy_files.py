"""deploy/: the systemd units, the launchd plist, the Dockerfile and compose file, and
``llmserver service install|uninstall``, checked as far as this machine allows."""

from __future__ import annotations

import plistlib
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from llmserver.cli import main
from llmserver.daemon.units import LAUNCHD_LABEL, deploy_files

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
GRACE_S = 30  # shutdown_grace_s's default


def service(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert main(["service", *argv]) == 0
    return capsys.readouterr().out


def unit_values(text: str) -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values.setdefault(key, []).append(value)
    return values


def test_deploy_files_are_what_the_renderer_writes() -> None:
    for name, text in deploy_files().items():
        assert (DEPLOY / name).read_text(encoding="utf-8") == text, f"deploy/{name} is stale"


@pytest.mark.parametrize("name", ["llmserver.service", "llmserver-user.service"])
def test_systemd_units_have_restart_drain_user_and_hardening(name: str) -> None:
    values = unit_values((DEPLOY / name).read_text(encoding="utf-8"))
    assert values["Restart"] == ["on-failure"]
    assert int(values["TimeoutStopSec"][0]) > GRACE_S
    assert values["EnvironmentFile"][0].startswith("-")  # optional file
    for option in ("NoNewPrivileges", "ProtectSystem", "ProtectHome", "PrivateTmp"):
        assert option in values
    assert values["ProtectSystem"] == ["strict"]
    assert "PrivateDevices" not in values  # it would hide the GPU
    assert "MemoryDenyWriteExecute" not in values  # CUDA maps executable memory
    if name == "llmserver.service":
        assert values["User"] == ["llmserver"]
        assert values["StateDirectory"] == ["llmserver"]


def _verify(unit: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(unit)],
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not here")
def test_systemd_analyze_verifies_the_units(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("llmserver.service", "llmserver-user.service"):
        # verify wants ExecStart's program to exist: use this interpreter in a copy
        lines = (DEPLOY / name).read_text(encoding="utf-8").splitlines(keepends=True)
        copy = tmp_path / name
        copy.write_text(
            "".join(
                f"ExecStart={sys.executable} -m llmserver serve\n"
                if line.startswith("ExecStart=")
                else line
                for line in lines
            ),
            encoding="utf-8",
        )
        result = _verify(copy)
        assert result.returncode == 0, result.stderr
        assert result.stderr.strip() == "", result.stderr
    # and the unit `service install` writes for this machine, as it is
    written = tmp_path / "installed" / "llmserver.service"
    service(capsys, "install", "--platform", "systemd", "--dest", str(written), "--", "--port", "1")
    result = _verify(written)
    assert result.returncode == 0, result.stderr


def test_plist_parses_and_holds_the_launchd_keys() -> None:
    with (DEPLOY / f"{LAUNCHD_LABEL}.plist").open("rb") as file:
        plist: dict[str, Any] = plistlib.load(file)
    assert plist["Label"] == LAUNCHD_LABEL
    assert plist["RunAtLoad"] is True
    assert plist["KeepAlive"] == {"SuccessfulExit": False}
    assert plist["ExitTimeOut"] > GRACE_S
    assert plist["ProgramArguments"][1:3] == ["serve", "--config"]
    assert plist["StandardOutPath"].endswith(".log")
    assert plist["StandardErrorPath"].endswith(".log")
    assert "LLMSERVER_DATA_DIR" in plist["EnvironmentVariables"]


@pytest.mark.parametrize(
    ("platform", "user"), [("systemd", False), ("systemd", True), ("launchd", True)]
)
def test_service_install_dry_run_prints_what_it_writes(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    platform: str,
    user: bool,
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "share"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.gguf").write_bytes(b"")
    dest = tmp_path / "out" / "unit"
    flags = ["--platform", platform, "--dest", str(dest), *(["--user"] if user else [])]
    serve = ["--", "m.gguf", "--port", "8001", "--shutdown-grace-s", "60"]
    printed = service(capsys, "install", "--dry-run", *flags, *serve)
    assert not dest.exists()  # a dry run writes nothing
    out = service(capsys, "install", *flags, *serve)
    assert f"wrote {dest}" in out
    written = dest.read_text(encoding="utf-8")
    assert printed == written
    # this interpreter, the model made absolute, the stop timeout above the chosen grace
    assert sys.executable in written
    assert str(tmp_path / "m.gguf") in written
    if platform == "systemd":
        assert "TimeoutStopSec=75" in written
    else:
        assert plistlib.loads(written.encode())["ExitTimeOut"] == 75
    out = service(capsys, "uninstall", *flags)
    assert not dest.exists()
    assert f"removed {dest}" in out


def test_service_install_refuses_a_bad_serve_flag(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        main(["service", "install", "--dry-run", "--", "--no-such-flag"])


def test_compose_profiles_gpu_and_isolation() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text(encoding="utf-8"))
    services = compose["services"]
    assert services["ollama"]["profiles"] == ["ollama"]
    assert services["vllm"]["profiles"] == ["vllm"]
    for engine in ("ollama", "vllm"):
        device = services[engine]["deploy"]["resources"]["reservations"]["devices"][0]
        assert device == {"driver": "nvidia", "count": "all", "capabilities": ["gpu"]}
        assert "ports" not in services[engine]  # nothing outside reaches the engine
        assert "lan" not in services[engine]["networks"]
    assert compose["networks"]["engine"]["internal"] is True
    for front in ("llmserver-ollama", "llmserver-vllm"):
        spec = services[front]
        assert spec["ports"] == ["8000:8000"]
        assert "engine" in spec["networks"]
        assert "LLMSERVER_API_KEY" in spec["environment"]
        assert int(spec["stop_grace_period"].rstrip("s")) > GRACE_S
    assert services["llmserver-ollama"]["command"][1] == "http://ollama:11434/v1"
    assert services["llmserver-vllm"]["command"][1] == "http://vllm:8000/v1"


def test_dockerfile_has_the_runtime_essentials() -> None:
    text = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    for needle in (
        "ARG PYTHON_IMAGE=python:3.11-slim",
        "AS build",
        "ARG CUDA=0",
        'VOLUME ["/data"]',
        "LLMSERVER_DATA_DIR=/data",
        "USER 10001:10001",
        "STOPSIGNAL SIGTERM",
        "HEALTHCHECK",
        "/health",
    ):
        assert needle in text


@pytest.mark.skipif(shutil.which("hadolint") is None, reason="hadolint not installed")
def test_hadolint_passes_the_dockerfile() -> None:
    result = subprocess.run(
        ["hadolint", str(DEPLOY / "Dockerfile")], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_docker_check_script_skips_without_an_engine() -> None:
    if shutil.which("docker") is not None:
        info = subprocess.run(["docker", "info"], capture_output=True, check=False)
        if info.returncode == 0:
            pytest.skip("a Docker engine runs here: run deploy/docker-check.sh itself")
    result = subprocess.run(
        ["bash", str(DEPLOY / "docker-check.sh")], capture_output=True, text=True, check=False
    )
    assert result.returncode == 77
    assert "no Docker engine" in result.stderr


def test_cluster_compose_has_two_gateways_on_one_state_behind_nginx() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.cluster.yaml").read_text(encoding="utf-8"))
    services = compose["services"]
    a, b = services["gateway-a"]["environment"], services["gateway-b"]["environment"]
    for shared in ("LLMSERVER_STORE", "LLMSERVER_KEYS_STORE", "LLMSERVER_RATE_LIMIT_STORAGE"):
        assert a[shared] == b[shared]
    assert a["LLMSERVER_STORE"].startswith("postgresql://")
    assert a["LLMSERVER_RATE_LIMIT_STORAGE"].startswith("redis://redis:")
    assert (a["LLMSERVER_GATEWAY_ID"], b["LLMSERVER_GATEWAY_ID"]) == ("gateway-a", "gateway-b")
    assert services["gateway-a"]["build"]["args"]["EXTRAS"] == "state"  # psycopg and redis
    assert "8000:80" in services["nginx"]["ports"]
    assert compose["networks"]["state"]["internal"] is True  # the databases publish nothing
    nginx = (DEPLOY / "nginx.conf").read_text(encoding="utf-8")
    assert "server gateway-a:8000" in nginx
    assert "server gateway-b:8000" in nginx
    assert "proxy_buffering off;" in nginx  # streams are not held back
