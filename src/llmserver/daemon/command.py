"""``llmserver service install|uninstall``: run this llmserver as a systemd or launchd service.

The unit runs this interpreter (``sys.executable -m llmserver serve``) with the ``serve``
arguments given after ``--``, relative paths among them made absolute (a service's working
directory is not the shell's). ``--dry-run`` prints exactly the text it would write.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from llmserver.config.settings import SettingsError, default_data_dir
from llmserver.daemon.units import (
    DEFAULT_GRACE_S,
    HOME_ROOTS,
    LAUNCHD_LABEL,
    ServiceSpec,
    launchd_plist,
    systemd_unit,
    unit_path,
)

DESCRIPTION = """\
Write (or remove) a systemd unit on Linux or a launchd plist on macOS that runs
`llmserver serve` with this interpreter. serve's own arguments go after `--`."""

EXAMPLES = """\
examples:
  llmserver service install --user --dry-run -- ./model.gguf --port 8000
  llmserver service install --user -- --config ~/llmserver.yaml
  sudo llmserver service install -- --config /etc/llmserver/llmserver.yaml --host 0.0.0.0
  llmserver service uninstall --user"""


def split_serve_args(argv: list[str]) -> tuple[list[str], list[str]]:
    """``service ...`` arguments, and the ``serve`` arguments after its ``--``."""
    if argv[:1] == ["service"] and "--" in argv:
        cut = argv.index("--")
        return argv[:cut], argv[cut + 1 :]
    return argv, []


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``service`` sub-commands."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--user", action="store_true", help="a user service, not system-wide")
    common.add_argument(
        "--dry-run", action="store_true", help="print what would be written, change nothing"
    )
    common.add_argument(
        "--platform",
        choices=["systemd", "launchd"],
        default="launchd" if sys.platform == "darwin" else "systemd",
        help="service manager (default: this machine's)",
    )
    common.add_argument("--dest", type=Path, help="write the file here instead")
    actions = parser.add_subparsers(dest="service_action", required=True)
    actions.add_parser("install", help="write the unit or plist", parents=[common])
    actions.add_parser("uninstall", help="remove the unit or plist", parents=[common])
    parser.set_defaults(serve_args=[])


def absolute_args(args: list[str], cwd: Path) -> list[str]:
    """``args`` with every relative path that exists here made absolute."""
    out = []
    for arg in args:
        flag, sep, value = arg.partition("=") if arg.startswith("--") else ("", "", arg)
        if value and not value.startswith("-") and not Path(value).is_absolute():
            candidate = cwd / Path(value).expanduser()
            if (cwd / value).exists():
                value = str(candidate.resolve())
        out.append(f"{flag}{sep}{value}")
    return out


def _grace(args: list[str]) -> float:
    for i, arg in enumerate(args):
        value = None
        if arg == "--shutdown-grace-s" and i + 1 < len(args):
            value = args[i + 1]
        elif arg.startswith("--shutdown-grace-s="):
            value = arg.partition("=")[2]
        if value is not None:
            try:
                return float(value)
            except ValueError:
                raise SettingsError(f"--shutdown-grace-s must be a number, not {value!r}") from None
    return DEFAULT_GRACE_S


def service_spec(args: argparse.Namespace) -> ServiceSpec:
    """What this machine's service runs."""
    serve = absolute_args(list(args.serve_args), Path.cwd())
    program = [sys.executable, "-m", "llmserver", "serve", *serve]
    data_dir = str(default_data_dir().expanduser())
    home = Path.home()
    if args.platform == "launchd":
        logs = home / "Library/Logs/llmserver" if args.user else Path("/Library/Logs/llmserver")
        env = {} if args.user else {"LLMSERVER_DATA_DIR": "/Library/Application Support/llmserver"}
        return ServiceSpec(program, args.user, _grace(serve), data_dir, str(logs), env)
    return ServiceSpec(program, args.user, _grace(serve), data_dir)


def target(args: argparse.Namespace) -> Path:
    """The file to write or remove."""
    if args.dest is not None:
        return Path(args.dest)
    config_home = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return unit_path(args.platform, args.user, Path.home(), config_home)


def render(args: argparse.Namespace) -> str:
    """The unit or plist text."""
    spec = service_spec(args)
    return launchd_plist(spec) if args.platform == "launchd" else systemd_unit(spec)


def _next_steps(args: argparse.Namespace, path: Path) -> str:
    if args.platform == "launchd":
        domain = f"gui/{os.getuid()}" if args.user else "system"
        stop = f"launchctl bootout {domain}/{LAUNCHD_LABEL}"
        return f"next: launchctl bootstrap {domain} {path}  (stop: {stop})"
    if args.user:
        return "next: systemctl --user daemon-reload && systemctl --user enable --now llmserver"
    return (
        "next: useradd --system --home-dir /var/lib/llmserver --shell /usr/sbin/nologin "
        "llmserver  (once)\n      systemctl daemon-reload && systemctl enable --now llmserver"
    )


def run(args: argparse.Namespace) -> int:
    """Run a ``service`` sub-command."""
    path = target(args)
    if args.service_action == "uninstall":
        if args.dry_run:
            print(f"would remove {path}")
            return 0
        if not path.exists():
            print(f"nothing to remove: {path} does not exist")
            return 0
        path.unlink()
        print(f"removed {path}; stop the running service with systemctl/launchctl")
        return 0
    text = render(args)
    if not args.user and args.platform == "systemd" and sys.executable.startswith(HOME_ROOTS):
        print(
            f"warning: {sys.executable} is in a home directory, which the llmserver user "
            "cannot read; install llmserver elsewhere (python3 -m venv /opt/llmserver) "
            "or use --user",
            file=sys.stderr,
        )
    if args.dry_run:
        print(f"# would write {path}", file=sys.stderr)
        sys.stdout.write(text)
        return 0
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        if args.user and args.platform == "systemd":
            Path(service_spec(args).data_dir).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SettingsError(
            f"cannot write {path}: {exc.strerror} (run as root, or --user)"
        ) from None
    print(f"wrote {path}")
    print(_next_steps(args, path))
    return 0
