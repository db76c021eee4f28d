"""``python -m llmserver.bench``: the bench command on its own."""

from __future__ import annotations

import argparse
import sys

from llmserver.bench.command import add_arguments, run


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run the benchmark."""
    parser = argparse.ArgumentParser(prog="python -m llmserver.bench")
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
