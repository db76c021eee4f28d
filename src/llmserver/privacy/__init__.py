"""PII recognisers and masking for Korean and English text.

Standard library only. :class:`PIIMasker` finds and masks personal data in a whole text;
:class:`StreamMasker` does the same for streamed output; :class:`Vault` masks with numbered
placeholders and puts the values back into the answer. Text is normalised first (NFKC,
invisible characters removed), and masked output is masked *normalised* text.
"""

from llmserver.privacy.masker import MaskMode, PIIMasker
from llmserver.privacy.normalize import normalize
from llmserver.privacy.stream import StreamMasker
from llmserver.privacy.types import MaskingError, PIIMatch, PIIType
from llmserver.privacy.vault import RestoreStream, Vault

__all__ = [
    "MaskMode",
    "MaskingError",
    "PIIMasker",
    "PIIMatch",
    "PIIType",
    "RestoreStream",
    "StreamMasker",
    "Vault",
    "normalize",
]
