"""The command line as tests read it."""

from __future__ import annotations

import argparse

from llmserver.cli import build_parser


def serve_help() -> str:
    """The ``serve`` command's ``--help`` text."""
    parser = build_parser()
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return str(commands.choices["serve"].format_help())
