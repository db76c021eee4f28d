"""Durable batch jobs: the store (SQLite by default), validation of input files, and the runner,
a low-priority caller of the core service that works through every stored line."""
