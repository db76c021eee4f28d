"""Model administration: which models a caller sees, loading and unloading, idle timers,
readiness, start-up and shutdown.

The service composes one (``service.admin``); surfaces call it for everything about models
that is not work on them.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import AsyncIterator

from llmserver.config.settings import SettingsError, derived_model
from llmserver.core.caller import Caller
from llmserver.core.created import CreatedModels, Recipe
from llmserver.core.keep_alive import KeepAlive
from llmserver.core.manager import ModelHandle, ModelManager
from llmserver.core.model_info import ModelDetails, ModelInfo
from llmserver.core.residency import MemoryReport, budget_use
from llmserver.core.views import ModelView, Readiness, readiness
from llmserver.errors import InvalidRequestError, ModelNotFoundError, PermissionDeniedError

logger = logging.getLogger("llmserver.models")


class Admin:
    """The models, as each caller may see and manage them."""

    def __init__(self, manager: ModelManager, created: CreatedModels | None = None) -> None:
        self._manager = manager
        self._info = ModelInfo()
        #: idle-unload timers (Ollama's ``keep_alive``)
        self.keep_alive = KeepAlive(manager)
        #: models created at run time, kept in the data directory
        self._created = created
        if created is not None:
            self._restore(created)

    def _restore(self, created: CreatedModels) -> None:
        """Take on the models created before a restart (one that no longer builds is logged)."""
        for entry in created.entries():
            try:
                base = self._manager.lookup(str(entry.get("from")))
                self._manager.add(derived_model(base.config, entry))
            except (SettingsError, ModelNotFoundError, InvalidRequestError) as exc:
                logger.error("created model %s cannot be restored: %s", entry.get("id"), exc)

    async def create(self, caller: Caller, name: str, recipe: Recipe) -> ModelView:
        """Create (or replace) the model ``name`` from ``recipe`` and keep it (admin)."""
        caller.check_admin()
        created = self._store()
        base = self.authorise(caller, recipe.base)
        adapters = tuple(
            (str(created.blob_path(p)) if p.startswith("sha256") else p, scale)
            for p, scale in recipe.adapters
        )
        entry = dataclasses.replace(recipe, adapters=adapters).entry(name)
        entry["from"] = base.id
        try:
            config = derived_model(base.config, entry)
        except SettingsError as exc:
            raise InvalidRequestError(str(exc).replace("models[0]", name)) from None
        if name in (h.id for h in self._manager.handles()):
            self._check_created(created, name)
            await self._manager.remove(name)
        handle = self._manager.add(config)
        created.put(entry)
        logger.info("model %s created from %s", name, base.id)
        return ModelView.of(handle)

    async def copy(self, caller: Caller, source: str, destination: str) -> ModelView:
        """A new model ``destination`` like ``source``, sharing its weights (admin)."""
        caller.check_admin()
        handle = self.authorise(caller, source)
        entry = self._store().get(handle.id)
        recipe = Recipe.of(handle.config) if entry is not None else Recipe(base=handle.id)
        return await self.create(caller, destination, recipe)

    async def delete(self, caller: Caller, name: str) -> None:
        """Forget a model created at run time (admin); configured models are refused."""
        caller.check_admin()
        created = self._store()
        handle = self.authorise(caller, name)
        self._check_created(created, handle.id)
        await self._manager.remove(handle.id)
        created.remove(handle.id)
        logger.info("model %s deleted", handle.id)

    def has_blob(self, caller: Caller, digest: str) -> bool:
        """Whether the file ``digest`` was uploaded (admin)."""
        caller.check_admin()
        return self._store().blob_path(digest).is_file()

    async def save_blob(self, caller: Caller, digest: str, chunks: AsyncIterator[bytes]) -> None:
        """Keep an uploaded file (an adapter for :meth:`create`) under its digest (admin)."""
        caller.check_admin()
        await self._store().save_blob(digest, chunks)

    def recipe(self, caller: Caller, name: str) -> Recipe:
        """What a model is made of (its base and settings)."""
        return Recipe.of(self.model_handle(caller, name).config)

    def model_handle(self, caller: Caller, name: str) -> ModelHandle:
        """The model for ``name`` if the caller may see it (else 404)."""
        try:
            return self.authorise(caller, name)
        except PermissionDeniedError:
            raise ModelNotFoundError(name) from None

    def _store(self) -> CreatedModels:
        if self._created is None:
            raise InvalidRequestError("this server keeps no created models", code="unsupported")
        return self._created

    @staticmethod
    def _check_created(created: CreatedModels, name: str) -> None:
        if created.get(name) is None:
            raise InvalidRequestError(
                f"model '{name}' is set in the server's configuration file: change it there",
                param="model",
                code="configured_model",
            )

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

    def memory(self) -> MemoryReport:
        """Each device's memory budget and the bytes loaded models hold on it; swaps so far."""
        manager = self._manager
        devices = budget_use(manager.budgets, manager.residents())
        return MemoryReport(devices, manager.swaps.count, manager.swaps.seconds)

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
