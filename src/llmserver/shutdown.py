"""Graceful shutdown: on SIGTERM or Ctrl-C, drain, then stop.

1. ``/ready`` turns 503 and new generation requests get 503 "server is shutting down", while the
   listening socket stays open so load balancers and clients see why;
2. in-flight generations (running or queued) get up to ``shutdown_grace_s`` to finish;
3. then uvicorn stops: it closes the socket and idle connections, cancels what is still running
   after :data:`ABORT_AFTER_S` (which aborts those generations), and the app's lifespan frees
   the models. The process exits 0.

A second signal skips the rest of the grace period.

Start-up ends with one ``ready: http://HOST:PORT/v1 serving a, b`` line once the preloaded models
have loaded; if every one of them failed, the reasons are logged and the process exits 1, so a
supervisor's restart policy sees the failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from types import FrameType

import uvicorn
from fastapi import FastAPI

from llmserver.http.context import app_context

logger = logging.getLogger("llmserver.shutdown")

#: once draining is over, how long uvicorn waits for responses to finish before cancelling them
ABORT_AFTER_S = 1


class DrainingServer(uvicorn.Server):
    """A uvicorn server that drains the app's models before it stops."""

    def __init__(self, config: uvicorn.Config, app: FastAPI, grace_s: float) -> None:
        super().__init__(config)
        self.app = app
        self.grace_s = grace_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self._drain: asyncio.Task[None] | None = None
        self._report: asyncio.Future[None] | None = None
        #: the process's exit status: 1 when every preloaded model failed to load
        self.exit_code = 0

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        """Serve until a signal (remembering the loop, for the signal handler)."""
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        """Start listening, then report once the preloaded models have loaded (or failed)."""
        await super().startup(sockets)
        if self.started:  # the lifespan has run: the app context exists
            self._report = asyncio.ensure_future(self._report_start())

    async def _report_start(self) -> None:
        loading = app_context(self.app).loading
        # load_all marks failed models itself; anything it raises is in the log already
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.shield(loading)
        if loading.cancelled() or self.should_exit:
            return
        handles = app_context(self.app).models.handles()
        preloaded = [h for h in handles if h.config.preload]
        failed = [h for h in preloaded if h.state == "failed"]
        if preloaded and len(failed) == len(preloaded):
            reasons = "; ".join(f"{h.id}: {h.error}" for h in failed)
            logger.error("no model could be loaded, exiting: %s", reasons)
            self.exit_code = 1
            self.should_exit = True
            return
        serving = ", ".join(h.id for h in handles if h.state == "ready") or "no model yet"
        logger.info("ready: %s/v1 serving %s", self.listen_url(), serving)

    def listen_url(self) -> str:
        """``http://HOST:PORT`` as bound (the real port when 0 was asked for)."""
        host, port = self.config.host, self.config.port
        for server in self.servers:
            for sock in server.sockets:
                port = sock.getsockname()[1]
                break
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{port}"

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """Signal handler. Unlike uvicorn's, it does not re-raise the signal after shutdown,
        which would turn a clean exit into death by SIGTERM (exit status -15)."""
        if self._loop is None or self._drain is not None or not self.started:
            if self._drain is not None:
                logger.warning("second signal: aborting in-flight generations now")
            self.should_exit = True
            return
        self._loop.call_soon_threadsafe(self._begin_drain)

    def _begin_drain(self) -> None:
        if self._drain is None:
            self._drain = asyncio.ensure_future(self._drain_then_exit())

    async def _drain_then_exit(self) -> None:
        logger.info("shutting down: draining for up to %g s", self.grace_s)
        finished = await app_context(self.app).service.admin.drain(self.grace_s)
        if not finished:
            logger.warning("grace period over: aborting in-flight generations")
        self.should_exit = True


def serve(app: FastAPI, host: str, port: int, log_level: str, grace_s: float) -> int:
    """Run ``app`` until SIGTERM or Ctrl-C, then drain and stop; the exit status is 1 when
    every preloaded model failed (so a supervisor's restart policy sees it), else 0."""
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        log_config=None,
        access_log=False,
        # uvicorn would otherwise rewrite the client address from X-Forwarded-For for any peer
        # on 127.0.0.1, before llmserver's own ``trusted_proxies`` rule runs: only that rule
        # may decide which proxies are believed
        proxy_headers=False,
        timeout_graceful_shutdown=ABORT_AFTER_S,
    )
    server = DrainingServer(config, app, grace_s)
    server.run()
    logger.info("shutdown complete")
    return server.exit_code
