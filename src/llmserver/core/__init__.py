"""The protocol-neutral core: internal requests, the caller, the service (the one policy
path), generation, the model manager, scheduling, templating and embeddings. Never imports HTTP."""
