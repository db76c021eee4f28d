"""The ``llmserver`` command. ``serve`` flags are generated from the settings fields."""

from __future__ import annotations

import argparse
import logging
import sys
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from llmserver import __version__
from llmserver import bench as bench_command
from llmserver.config.settings import Settings, SettingsError, load_settings
from llmserver.security import commands as keys_command

logger = logging.getLogger("llmserver.cli")

#: settings that only a config file can express
FILE_ONLY = {"models", "roles"}


def _scalar_type(annotation: Any) -> Any:
    """The non-None member of ``X | None``."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        return members[0] if len(members) == 1 else str
    return annotation


def add_settings_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per settings field, with the field's description as its help."""
    for name, field in Settings.model_fields.items():
        if name in FILE_ONLY:
            continue
        flag = "--" + name.replace("_", "-")
        kind = _scalar_type(field.annotation)
        default = field.default if field.default is not None else "none"
        help_text = f"{field.description} (default: {default}; env: LLMSERVER_{name.upper()})"
        if kind is bool:
            parser.add_argument(
                flag, dest=name, action=argparse.BooleanOptionalAction, help=help_text
            )
        elif typing.get_origin(kind) is typing.Literal:
            parser.add_argument(flag, dest=name, choices=typing.get_args(kind), help=help_text)
        else:
            parser.add_argument(flag, dest=name, metavar=name.upper(), help=help_text)
        parser.set_defaults(**{name: None})


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Settings with the flags that were given overriding everything else."""
    overrides = {
        name: getattr(args, name)
        for name in Settings.model_fields
        if name not in FILE_ONLY and getattr(args, name, None) is not None
    }
    return load_settings(overrides)


def cmd_serve(args: argparse.Namespace) -> int:
    """Start the server."""
    from llmserver.app import create_app
    from llmserver.observability.logs import configure_logging
    from llmserver.shutdown import serve

    settings = settings_from_args(args)
    configure_logging(settings.log_level, settings.log_format, settings.log_dir)
    if settings.fallback_mock:
        logger.warning("fallback mock: serving the fake backend instead of the configured models")
    app = create_app(settings)
    serve(app, settings.host, settings.port, settings.log_level, settings.shutdown_grace_s)
    return 0


def cmd_settings(_: argparse.Namespace) -> int:
    """Print the settings tables (the README's reference is this output)."""
    from llmserver.config.settings_doc import markdown

    print(markdown())
    return 0


def cmd_usage(args: argparse.Namespace) -> int:
    """Print token usage per key, model and day from the usage database."""
    import datetime as dt

    from pydantic import ValidationError

    from llmserver.observability.accounting import UsageStore, usage_db_path, usage_table

    if args.db is not None:
        path = Path(args.db).expanduser()
    else:
        try:
            path = usage_db_path(Settings(config=args.config))
        except ValidationError as exc:
            raise SettingsError(str(exc)) from None
    try:
        since = dt.date.fromisoformat(args.since) if args.since else None
    except ValueError:
        raise SettingsError(f"--since must be a date like 2026-01-31, not {args.since!r}") from None
    if not path.is_file():
        print(f"no usage recorded yet: {path} does not exist")
        return 0
    print(usage_table(UsageStore(path).query(since)))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The whole command line."""
    parser = argparse.ArgumentParser(
        prog="llmserver", description="A self-hosted, OpenAI-compatible LLM API server."
    )
    parser.add_argument("--version", action="version", version=f"llmserver {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve the OpenAI API", description=cmd_serve.__doc__)
    add_settings_arguments(serve)
    serve.set_defaults(func=cmd_serve)
    docs = commands.add_parser("settings", help="print the settings reference as Markdown")
    docs.set_defaults(func=cmd_settings)
    usage = commands.add_parser(
        "usage", help="token usage per key, model and day", description=cmd_usage.__doc__
    )
    usage.add_argument("--since", help="first day to show, YYYY-MM-DD (UTC)")
    usage.add_argument("--db", help="usage database (default: the settings' usage_db)")
    usage.add_argument("--config", help="config file to read usage_db / data_dir from")
    usage.set_defaults(func=cmd_usage)
    bench = commands.add_parser(
        "bench",
        help="load-test any OpenAI-compatible endpoint",
        description="Load-test an OpenAI-compatible endpoint (ours or another server's).",
    )
    bench_command.add_arguments(bench)
    bench.set_defaults(func=bench_command.run)
    keys = commands.add_parser(
        "keys",
        help="create, list and revoke API keys",
        description="Manage API keys. A key is printed once; the keys file keeps its hash only.",
    )
    keys_command.add_arguments(keys)
    keys.set_defaults(func=keys_command.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``llmserver`` console script."""
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except SettingsError as exc:
        print(f"llmserver: {exc}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
