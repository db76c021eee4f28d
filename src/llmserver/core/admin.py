"""Model administration: which models a caller sees, loading and unloading, idle timers,
readiness, start-up and shutdown.

The service composes one (``service.admin``); surfaces call it for everything about models
that is not work on them.
"""

from __future__ import annotations

from llmserver.core.caller import Caller
from llmserver.core.keep_alive import KeepAlive
from llmserver.core.manager import ModelHandle, ModelManager
from llmserver.core.model_info import ModelDetails, ModelInfo
from llmserver.core.residency import DeviceUse, budget_use
from llmserver.core.views import ModelView, Readiness, readiness
from llmserver.errors import ModelNotFoundError, PermissionDeniedError


class Admin:
    """The models, as each caller may see and manage them."""

    def __init__(self, manager: ModelManager) -> None:
        self._manager = manager
        self._info = ModelInfo()
        #: idle-unload timers (Ollama's ``keep_alive``)
        self.keep_alive = KeepAlive(manager)

    def authorise(self, caller: Caller, name: str | None) -> ModelHandle:
        """The model for ``name`` (404 if unknown), if the caller may use it (403)."""
        handle = self._manager.lookup(name)
        if not caller.may_use([handle.id, *handle.config.aliases]):
            raise PermissionDeniedError(
                f"This API key may not use the model '{handle.id}'.",
                param="model",
                code="model_not_allowed",
            )
        return handle

    def models(self, caller: Caller) -> list[ModelView]:
        """Every model the caller may use, in config order."""
        return [
            ModelView.of(h)
            for h in self._manager.handles()
            if caller.may_use([h.id, *h.config.aliases])
        ]

    def model(self, caller: Caller, name: str) -> ModelView:
        """One model by id, alias or role; a model hidden from the caller is a 404."""
        try:
            return ModelView.of(self.authorise(caller, name))
        except PermissionDeniedError:
            raise ModelNotFoundError(name) from None

    async def load(self, caller: Caller, name: str) -> ModelView:
        """Load a model now (admin)."""
        caller.check_admin()
        return ModelView.of(await self._manager.load(name))

    async def unload(self, caller: Caller, name: str) -> ModelView:
        """Free a model once its running requests end (admin)."""
        caller.check_admin()
        return ModelView.of(await self._manager.unload(name))

    def memory(self) -> list[DeviceUse]:
        """Each device's memory budget and the bytes loaded models hold on it."""
        return budget_use(self._manager.budgets, self._manager.residents())

    async def details(self, caller: Caller, name: str) -> ModelDetails:
        """What the model's file says about it (architecture, size, digest...); 404 when
        hidden from the caller."""
        view = self.model(caller, name)
        handle = self._manager.lookup(view.id)
        template = handle.prompt_format.chat_template if handle.prompt_format else None
        return await self._info.details(handle.config, view, template)

    def keep_loaded(self, caller: Caller, name: str, seconds: float | None) -> None:
        """Unload the model after ``seconds`` idle (None: never); see :class:`KeepAlive`."""
        self.keep_alive.set(self.authorise(caller, name), seconds)

    def expires_at(self, name: str) -> float | None:
        """When the model's idle timer unloads it (Unix time); None: never."""
        return self.keep_alive.expires_at(self._manager.lookup(name))

    async def readiness(self) -> Readiness:
        """Each model's state, with engines asked whether they can serve."""
        return await readiness(self._manager)

    async def load_all(self) -> None:
        """Load and warm every ``preload`` model (at start-up)."""
        await self._manager.load_all()

    async def drain(self, grace_s: float) -> bool:
        """Refuse new work and wait up to ``grace_s`` for running work; True if it all ended."""
        return await self._manager.drain(grace_s)

    async def close(self) -> None:
        """Stop the idle timers and free every model."""
        await self.keep_alive.close()
        await self._manager.close_all()

    @property
    def default_model(self) -> str:
        """The id requests without a model go to."""
        return self._manager.default_id
