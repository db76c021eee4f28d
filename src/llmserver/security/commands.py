"""``llmserver keys create|list|revoke``: manage the API keys file."""

from __future__ import annotations

import argparse
import datetime as dt
from functools import partial
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from llmserver.config.settings import Settings, SettingsError
from llmserver.errors import StoreUnavailableError
from llmserver.security.key_table import KeyTable
from llmserver.security.keys import KeyFileError, create_key, read_keys, revoke_key


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return number


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``keys`` sub-commands."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--keys-file", type=Path, help="keys file (default: from the settings)")
    common.add_argument("--config", type=Path, help="YAML config file that sets keys_file")
    common.add_argument(
        "--keys-store",
        help="postgresql://... URL of a shared keys table (default: keys_store of the settings)",
    )
    actions = parser.add_subparsers(dest="keys_action", required=True)
    create = actions.add_parser("create", help="make a key and print it once", parents=[common])
    create.add_argument("--name", required=True, help="the key's name (shown in logs)")
    create.add_argument("--admin", action="store_true", help="may call admin endpoints")
    create.add_argument("--models", default="", help="comma-separated models it may use")
    create.add_argument("--rpm", type=_positive, help="requests per minute allowed")
    create.add_argument("--tpm", type=_positive, help="tokens per minute allowed")
    create.add_argument("--mask-pii", action="store_true", help="mask PII in its prompts")
    create.add_argument(
        "--pii-restore",
        action="store_true",
        help="mask PII in its prompts as numbered placeholders and put the values back into "
        "the answers",
    )
    actions.add_parser(
        "list", help="list keys (names and permissions, never key text)", parents=[common]
    )
    revoke = actions.add_parser("revoke", help="revoke a key by name", parents=[common])
    revoke.add_argument("name")


def _keys_file(args: argparse.Namespace) -> Path | KeyTable:
    """The keys file, or the shared table (``--keys-store`` or ``keys_store``)."""
    if args.keys_file is not None:
        return Path(args.keys_file)
    overrides: dict[str, Any] = {"config": args.config} if args.config else {}
    if args.keys_store:
        overrides["keys_store"] = args.keys_store
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        raise SettingsError(f"invalid configuration: {exc}") from None
    if settings.keys_store is not None:
        return KeyTable(settings.keys_store)
    return settings.data_file(settings.keys_file, "keys.json")


def run(args: argparse.Namespace) -> int:
    """Run a ``keys`` sub-command."""
    where = _keys_file(args)
    try:
        return _run(args, where)
    finally:
        if isinstance(where, KeyTable):
            where.close()


def _run(args: argparse.Namespace, path: Path | KeyTable) -> int:
    try:
        if args.keys_action == "create":
            models = [m.strip() for m in args.models.split(",") if m.strip()]
            create = path.create if isinstance(path, KeyTable) else partial(create_key, path)
            text = create(
                args.name,
                models=models,
                requests_per_minute=args.rpm,
                tokens_per_minute=args.tpm,
                admin=args.admin,
                mask_pii=args.mask_pii,
                pii_restore=args.pii_restore,
            )
            print(text)
            place = path.where() if isinstance(path, KeyTable) else str(path)
            print(f"# key '{args.name}' saved (hash only) in {place}; it is not shown again")
        elif args.keys_action == "list":
            _list(path)
        else:
            if isinstance(path, KeyTable):
                path.revoke(args.name)
            else:
                revoke_key(path, args.name)
            print(f"key '{args.name}' revoked")
    except KeyFileError as exc:
        raise SettingsError(str(exc)) from None
    return 0


def _list(path: Path | KeyTable) -> None:
    if isinstance(path, KeyTable):
        try:
            keys = path.read()
        except StoreUnavailableError:
            raise KeyFileError(f"{path.where()} cannot be reached") from None
        place = path.where()
    else:
        keys, place = read_keys(path), str(path)
    if not keys:
        print(f"no keys in {place}")
        return
    print("name\tadmin\trevoked\tmodels\trpm\ttpm\tmask_pii\tpii_restore\tcreated")
    for k in keys:
        created = dt.datetime.fromtimestamp(k.created, dt.UTC).strftime("%Y-%m-%d %H:%M")
        cells = [k.name, k.admin, k.revoked, ",".join(k.models) or "*"]
        cells += [
            k.requests_per_minute or "-",
            k.tokens_per_minute or "-",
            k.mask_pii,
            k.pii_restore,
            created,
        ]
        print("\t".join(str(c) for c in cells))
