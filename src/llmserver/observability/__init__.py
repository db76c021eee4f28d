"""Logs, metrics and usage accounting."""
