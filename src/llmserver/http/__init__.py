"""What every route shares: responses, streaming, and the pure ASGI middleware."""
