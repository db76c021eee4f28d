"""Thin HTTP adapters, one module per surface."""
