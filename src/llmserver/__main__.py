"""``python -m llmserver``."""

from llmserver.cli import main

raise SystemExit(main())
