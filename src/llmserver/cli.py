"""The ``llmserver`` command. ``serve`` flags are generated from the settings fields, plus MODEL
words and the vLLM / llama-server spellings for one model (``config/command_line.py``)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic.fields import FieldInfo

from llmserver import __version__, batch_command
from llmserver import bench as bench_command
from llmserver.config.command_line import ALIASES, apply_aliases, given_aliases, model_entries
from llmserver.config.settings import (
    DEFAULT_EMBEDDING_MODEL_ID,
    DEFAULT_MODEL_ID,
    Settings,
    SettingsError,
    load_settings,
)
from llmserver.daemon import command as service_command
from llmserver.security import commands as keys_command

logger = logging.getLogger("llmserver.cli")

#: settings that only a config file can express (``models`` also come as MODEL words)
FILE_ONLY = {"models", "roles"}

#: ``serve --help`` sections, in order; a settings field listed in none goes to "other settings"
SETTINGS_GROUPS: dict[str, tuple[str, ...]] = {
    "server": (
        "config",
        "host",
        "port",
        "default_model",
        "max_loaded_models",
        "data_dir",
        "max_n",
        "keepalive_s",
    ),
    "security": (
        "api_key",
        "keys_file",
        "insecure_no_auth",
        "status_requires_key",
        "allowed_ips",
        "trusted_proxies",
        "cors_origins",
        "cors_methods",
        "cors_headers",
    ),
    "several gateways (shared state)": (
        "store",
        "store_lease_s",
        "gateway_id",
        "keys_store",
        "response_cache_redis",
    ),
    "privacy and the simple endpoints": (
        "pii_mask_mode",
        "infer_mask_pii",
        "mask_output",
        "input_max_length",
        "fallback_response",
        "infer_max_length",
        "infer_temperature",
        "infer_top_p",
        "generate_max_tokens",
        "generate_temperature",
        "generate_top_k",
        "chat_prompt_format",
        "error_language",
    ),
    "traffic control": (
        "max_concurrent_inference",
        "max_queue",
        "max_queue_wait_s",
        "inference_timeout_s",
        "rate_limit_requests_per_minute",
        "rate_limit_tokens_per_minute",
        "rate_limit_storage",
        "max_prompts",
        "max_body_bytes",
        "shutdown_grace_s",
        "fallback_mock",
    ),
    "logging and usage": ("log_level", "log_format", "log_dir", "usage_db"),
}

SERVE_DESCRIPTION = """\
Serve the OpenAI API. Each MODEL is a .gguf file, a model directory, a Hugging Face id or the
http(s)://.../v1 URL of another OpenAI-compatible server. name=value words right after a MODEL
set its fields (id=NAME names it). Without MODEL: the models of --config, else the default
SmolLM2 model. Settings: flags, then LLMSERVER_* variables (a .env file may set them), then the
config file."""

SERVE_EXAMPLES = """\
examples:
  llmserver serve                                   # the default model on 127.0.0.1:8000
  llmserver serve ./qwen2.5-0.5b-instruct-q4_k_m.gguf -c 8192 -np 4 -t 8
  llmserver serve ./model.gguf --served-model-name chat gpt-4o-mini   # id and an alias
  llmserver serve Qwen/Qwen2.5-0.5B-Instruct --max-model-len 8192   # vLLM or Transformers
  llmserver serve http://127.0.0.1:11434/v1 id=llama3.2             # in front of Ollama
  llmserver serve ./a.gguf ./b.gguf --host 0.0.0.0 --api-key "$KEY"
  llmserver serve --config llmserver.yaml
  llmserver service install --user -- ./model.gguf --port 8000"""


def _scalar_type(annotation: Any) -> Any:
    """The non-None member of ``X | None``."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        return members[0] if len(members) == 1 else str
    return annotation


def _shown_default(field: FieldInfo) -> str:
    """A field's default as ``--help`` shows it (never ``PydanticUndefined``)."""
    value = field.get_default(call_default_factory=True)
    if value is None or value == []:
        return "none"
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return str(value)


def _add_field(group: argparse._ArgumentGroup, name: str, field: FieldInfo) -> None:
    flag = "--" + name.replace("_", "-")
    kind = _scalar_type(field.annotation)
    env = f"LLMSERVER_{name.upper()}"
    help_text = f"{field.description} (default: {_shown_default(field)}; env: {env})"
    help_text = help_text.replace("%", "%%")
    if kind is bool:
        group.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, help=help_text)
    elif typing.get_origin(kind) is typing.Literal:
        group.add_argument(flag, dest=name, choices=typing.get_args(kind), help=help_text)
    else:
        group.add_argument(flag, dest=name, metavar=name.upper(), help=help_text)


def add_settings_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per settings field, with the field's description as its help, in sections."""
    fields = {n: f for n, f in Settings.model_fields.items() if n not in FILE_ONLY}
    grouped = {name for names in SETTINGS_GROUPS.values() for name in names}
    sections = {**SETTINGS_GROUPS, "other settings": tuple(n for n in fields if n not in grouped)}
    for title, names in sections.items():
        if not names:
            continue
        group = parser.add_argument_group(title)
        for name in names:
            _add_field(group, name, fields[name])
    parser.set_defaults(**dict.fromkeys(fields))


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """MODEL words and the single-model flags that vLLM and llama-server users know."""
    group = parser.add_argument_group(
        "models", "MODEL words, and flags for one model spelled as vLLM and llama-server do"
    )
    group.add_argument(
        "models",
        nargs="*",
        metavar="MODEL",
        help="a .gguf file, model directory, Hugging Face id or http(s)://.../v1 URL, each "
        "optionally followed by name=value words (id=NAME)",
    )
    for alias in ALIASES:
        nargs = "+" if alias.dest == "served_model_name" else None
        group.add_argument(
            *alias.flags,
            dest=alias.dest,
            type=alias.kind,
            nargs=nargs,
            metavar=alias.metavar,
            help=alias.help,
        )
    group.add_argument(
        "--env-file",
        type=Path,
        metavar="FILE",
        help="read environment variables from this file (default: .env in the working "
        "directory, if there is one); variables already set win",
    )


def load_env_file(path: Path | None) -> None:
    """Set the variables of a ``.env`` file that are not set yet, as docker compose and
    systemd's EnvironmentFile do; an explicitly named file must exist."""
    from dotenv import dotenv_values

    if path is None:
        path = Path(".env")
        if not path.is_file():
            return
    elif not path.is_file():
        raise SettingsError(f"env file not found: {path}")
    for name, value in dotenv_values(path).items():
        if value is not None:
            os.environ.setdefault(name, value)


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Settings with the flags and MODEL words that were given overriding everything else."""
    overrides: dict[str, Any] = {
        name: getattr(args, name)
        for name in Settings.model_fields
        if name not in FILE_ONLY and getattr(args, name, None) is not None
    }
    entries = model_entries(getattr(args, "models", None) or [], Path.cwd())
    if entries:
        overrides["models"] = entries
    aliases = given_aliases(vars(args))
    if not aliases:
        return load_settings(overrides)
    if len(entries) > 1:
        raise SettingsError(
            "flags such as -c or --threads apply to one model; with several, write name=value "
            "after each MODEL (context_size=8192) or use a config file"
        )
    if not entries:
        # the one configured model, or the default chat model
        settings = load_settings(overrides)
        entries = [m.model_dump() for m in settings.models]
        default_ids = {DEFAULT_MODEL_ID, DEFAULT_EMBEDDING_MODEL_ID}
        if len(entries) > 1 and not {e["id"] for e in entries} <= default_ids:
            raise SettingsError(
                "flags such as -c or --threads apply to one model, and the config has several; "
                "set the fields in the config file instead"
            )
    entries[0] = apply_aliases(entries[0], aliases)
    return load_settings({**overrides, "models": entries})


def cmd_serve(args: argparse.Namespace) -> int:
    """Start the server."""
    from llmserver.app import create_app
    from llmserver.observability.logs import configure_logging
    from llmserver.shutdown import serve

    load_env_file(args.env_file)
    settings = settings_from_args(args)
    configure_logging(
        settings.log_level, settings.log_format, settings.log_dir, settings.gateway_in_logs()
    )
    if settings.fallback_mock:
        logger.warning("fallback mock: serving the fake backend instead of the configured models")
    app = create_app(settings)
    return serve(app, settings.host, settings.port, settings.log_level, settings.shutdown_grace_s)


def cmd_settings(_: argparse.Namespace) -> int:
    """Print the settings tables (docs/settings.md is this output)."""
    from llmserver.config.settings_doc import markdown

    print(markdown())
    return 0


def cmd_usage(args: argparse.Namespace) -> int:
    """Print token usage per key, model and day from the usage database."""
    import datetime as dt

    from pydantic import ValidationError

    from llmserver.observability.accounting import UsageStore, usage_db_path, usage_table

    settings = None
    if args.db is not None:
        path = Path(args.db).expanduser()
    else:
        try:
            settings = Settings(config=args.config)
        except ValidationError as exc:
            raise SettingsError(str(exc)) from None
        path = usage_db_path(settings)
    try:
        since = dt.date.fromisoformat(args.since) if args.since else None
    except ValueError:
        raise SettingsError(f"--since must be a date like 2026-01-31, not {args.since!r}") from None
    if settings is not None and settings.store != "sqlite":  # the gateways' shared table
        return _shared_usage(settings.store, since)
    if not path.is_file():
        print(f"no usage recorded yet: {path} does not exist")
        return 0
    print(usage_table(UsageStore(path).query(since)))
    return 0


def _shared_usage(url: str, since: object) -> int:
    import datetime as dt

    from llmserver.errors import StoreUnavailableError
    from llmserver.observability.accounting import usage_table
    from llmserver.observability.pg_usage import PostgresUsageStore
    from llmserver.pg import Database

    db = Database(url, max_size=1)
    try:
        rows = PostgresUsageStore(db).query(since if isinstance(since, dt.date) else None)
    except StoreUnavailableError as exc:
        raise SettingsError(f"the usage table cannot be read: {exc}") from None
    finally:
        db.close()
    print(usage_table(rows))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The whole command line."""
    parser = argparse.ArgumentParser(
        prog="llmserver", description="A self-hosted, OpenAI-compatible LLM API server."
    )
    parser.add_argument("--version", action="version", version=f"llmserver {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser(
        "serve",
        help="serve the OpenAI API",
        usage="llmserver serve [MODEL [name=value ...] ...] [options]",
        description=SERVE_DESCRIPTION,
        epilog=SERVE_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_model_arguments(serve)
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
    service = commands.add_parser(
        "service",
        help="install or remove llmserver as a systemd or launchd service",
        description=service_command.DESCRIPTION,
        epilog=service_command.EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    service_command.add_arguments(service)
    service.set_defaults(func=service_command.run)
    batch = commands.add_parser(
        "batch",
        help="submit, watch, list, cancel and fetch batch jobs",
        description="Batch jobs on any llmserver (OpenAI's Files and Batches API). The key comes "
        "from --api-key, $LLMSERVER_API_KEY or $OPENAI_API_KEY.",
    )
    batch_command.add_arguments(batch)
    batch.set_defaults(func=batch_command.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``llmserver`` console script."""
    argv, serve_args = service_command.split_serve_args(
        list(sys.argv[1:] if argv is None else argv)
    )
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "service":
        parser.parse_args(["serve", *serve_args])  # a bad serve flag fails here, not in the unit
        args.serve_args = serve_args
    try:
        code: int = args.func(args)
    except SettingsError as exc:
        print(f"llmserver: {exc}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
