"""How one call's input is masked: not at all, one way (``[PHONE]``), or behind a vault of
numbered placeholders (``[PHONE_1]``) whose values the answer gets back (``pii_restore``)."""

from __future__ import annotations

from dataclasses import dataclass

from llmserver.core.caller import Caller
from llmserver.privacy import PIIMasker, Vault
from llmserver.security import pii


@dataclass(frozen=True, slots=True)
class InputMasking:
    """The masking of one call's input texts, as the caller, the model and the surface ask."""

    masker: PIIMasker | None = None
    #: set when the answer gets the values back; the input is then masked through it
    vault: Vault | None = None

    @classmethod
    def of(cls, masker: PIIMasker, caller: Caller, model_masks: bool, model_restores: bool,
           asked: bool) -> InputMasking:  # fmt: skip
        """Restoring where the key or the model asks for it, else one-way masking where the
        key, the model or the surface asks for it, else none."""
        if caller.pii_restore or model_restores:
            return cls(vault=Vault(masker))
        if asked or model_masks or caller.mask_pii:
            return cls(masker=masker)
        return cls()

    @property
    def active(self) -> bool:
        """Whether input texts are masked."""
        return self.masker is not None or self.vault is not None

    def __call__(self, text: str) -> str:
        """``text`` as the model gets it (a 500 when masking fails: never the raw text)."""
        if self.vault is not None:
            return pii.mask(self.vault, text)
        return text if self.masker is None else pii.mask(self.masker, text)
