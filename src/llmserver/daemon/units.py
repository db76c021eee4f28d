"""The text of a systemd unit and a launchd plist that run ``llmserver serve``.

The files in ``deploy/`` are these functions' output for the paths a package install uses
(``deploy_files()``; a test keeps them equal), and ``llmserver service install`` writes the same
with this machine's interpreter and paths.
"""

from __future__ import annotations

import plistlib
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

#: seconds systemd / launchd wait after SIGTERM before SIGKILL, beyond ``shutdown_grace_s``
STOP_MARGIN_S = 15
DEFAULT_GRACE_S = 30.0
UNIT_NAME = "llmserver.service"
LAUNCHD_LABEL = "org.llmserver.server"
SYSTEM_DATA_DIR = "/var/lib/llmserver"
SYSTEM_ENV_FILE = "/etc/llmserver/llmserver.env"
USER_ENV_FILE = "%h/.config/llmserver/llmserver.env"
#: where a home-directory path makes ProtectHome=yes impossible
HOME_ROOTS = ("/home/", "/root/", "/run/user/")


@dataclass(frozen=True)
class ServiceSpec:
    """What a service runs, and as whom."""

    program: list[str]
    user_mode: bool = False
    grace_s: float = DEFAULT_GRACE_S
    #: the data directory a user service may write (system services get a StateDirectory)
    data_dir: str = "%h/.local/share/llmserver"
    #: launchd only: where stdout and stderr go
    log_dir: str = "/usr/local/var/log/llmserver"
    environment: dict[str, str] = field(default_factory=dict)

    @property
    def stop_timeout_s(self) -> int:
        """Longer than the drain, so a graceful shutdown is never killed half-way."""
        return int(self.grace_s) + STOP_MARGIN_S


def _systemd_word(arg: str) -> str:
    # '%' starts a systemd specifier; '%h/...' is kept on purpose (the user's home)
    text = re.sub(r"%(?!h/)", "%%", arg)
    if re.fullmatch(r"[\w@%+=:,./-]+", text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _protect_home(spec: ServiceSpec) -> str:
    if spec.user_mode or any(arg.startswith(HOME_ROOTS) for arg in spec.program):
        return "read-only"  # the interpreter or a model lives in a home directory
    return "yes"


def systemd_unit(spec: ServiceSpec) -> str:
    """A systemd unit: system-wide under a dedicated user, or a user service."""
    scope = "user service" if spec.user_mode else "system service"
    lines = [
        f"# llmserver as a systemd {scope}. Settings go in the environment file below",
        "# (LLMSERVER_* variables, for example LLMSERVER_API_KEY), or in a --config file.",
        "[Unit]",
        "Description=llmserver, an OpenAI-compatible LLM API server",
        "After=network-online.target",
        "Wants=network-online.target",
        "",
        "[Service]",
        "Type=exec",
        "ExecStart=" + " ".join(_systemd_word(a) for a in spec.program),
    ]
    if spec.user_mode:
        lines += [f"EnvironmentFile=-{USER_ENV_FILE}"]
    else:
        lines += [
            "User=llmserver",
            "Group=llmserver",
            "StateDirectory=llmserver",
            "StateDirectoryMode=0700",
            "LogsDirectory=llmserver",
            f"WorkingDirectory={SYSTEM_DATA_DIR}",
            f"Environment=LLMSERVER_DATA_DIR={SYSTEM_DATA_DIR}",
            f"Environment=HOME={SYSTEM_DATA_DIR}",
            f"EnvironmentFile=-{SYSTEM_ENV_FILE}",
        ]
    lines += [f"Environment={_systemd_word(f'{k}={v}')}" for k, v in spec.environment.items()]
    lines += [
        "Environment=PYTHONUNBUFFERED=1",
        "Restart=on-failure",
        "RestartSec=5",
        "KillSignal=SIGTERM",
        f"# above shutdown_grace_s ({spec.grace_s:g} s), so in-flight requests can finish",
        f"TimeoutStopSec={spec.stop_timeout_s}",
        "# hardening that leaves CUDA working: no PrivateDevices= (hides /dev/nvidia*) and no",
        "# MemoryDenyWriteExecute= (the CUDA driver maps executable memory)",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        f"ProtectHome={_protect_home(spec)}",
        "PrivateTmp=yes",
    ]
    if spec.user_mode:
        lines += [f"ReadWritePaths=-{spec.data_dir}"]
    else:
        lines += [
            "ProtectKernelTunables=yes",
            "ProtectControlGroups=yes",
            "RestrictSUIDSGID=yes",
            "LockPersonality=yes",
        ]
    lines += [
        "",
        "[Install]",
        f"WantedBy={'default.target' if spec.user_mode else 'multi-user.target'}",
        "",
    ]
    return "\n".join(lines)


def launchd_plist(spec: ServiceSpec) -> str:
    """A launchd property list: a LaunchAgent (user) or a LaunchDaemon (system)."""
    environment = {"PYTHONUNBUFFERED": "1", **spec.environment}
    data = {
        "Label": LAUNCHD_LABEL,
        "ProgramArguments": spec.program,
        "RunAtLoad": True,
        # restarted when it exits with an error, left stopped after a clean stop
        "KeepAlive": {"SuccessfulExit": False},
        "ThrottleInterval": 10,
        # launchd's SIGTERM-to-SIGKILL wait (default 20 s), above the drain
        "ExitTimeOut": spec.stop_timeout_s,
        "StandardOutPath": f"{spec.log_dir}/llmserver.log",
        "StandardErrorPath": f"{spec.log_dir}/llmserver.log",
        "EnvironmentVariables": environment,
    }
    return plistlib.dumps(data, sort_keys=False).decode("utf-8")


def shell_command(program: list[str]) -> str:
    """``program`` as one shell line, for messages."""
    return shlex.join(program)


def deploy_files() -> dict[str, str]:
    """The contents of the unit files kept in ``deploy/``, by file name."""
    system = ServiceSpec(
        program=[
            "/opt/llmserver/bin/llmserver",
            "serve",
            "--config",
            "/etc/llmserver/llmserver.yaml",
        ]
    )
    user = ServiceSpec(
        program=[
            "%h/.local/share/llmserver/venv/bin/llmserver",
            "serve",
            "--config",
            "%h/.config/llmserver/llmserver.yaml",
        ],
        user_mode=True,
    )
    agent = ServiceSpec(
        program=[
            "/usr/local/opt/llmserver/bin/llmserver",
            "serve",
            "--config",
            "/usr/local/etc/llmserver/llmserver.yaml",
        ],
        user_mode=True,
        log_dir="/usr/local/var/log/llmserver",
        environment={"LLMSERVER_DATA_DIR": "/usr/local/var/llmserver"},
    )
    return {
        "llmserver.service": systemd_unit(system),
        "llmserver-user.service": systemd_unit(user),
        f"{LAUNCHD_LABEL}.plist": launchd_plist(agent),
    }


def unit_path(platform: str, user_mode: bool, home: Path, config_home: Path) -> Path:
    """Where the unit (systemd) or plist (launchd) of this machine goes."""
    if platform == "launchd":
        folder = home / "Library/LaunchAgents" if user_mode else Path("/Library/LaunchDaemons")
        return folder / f"{LAUNCHD_LABEL}.plist"
    if user_mode:
        return config_home / "systemd/user" / UNIT_NAME
    return Path("/etc/systemd/system") / UNIT_NAME
