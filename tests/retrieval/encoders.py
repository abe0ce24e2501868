"""A tiny random-initialised sentence encoder (BERT + WordPiece + mean pooling) built in a second, offline."""

from __future__ import annotations

import json
import re
from pathlib import Path

from domainkd.retrieval import SentenceEncoder, load_encoder

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def build_tiny_encoder(directory: Path, corpus: list[str], hidden_size: int = 32) -> Path:
    """Save a 2-layer BERT (~30k parameters) with a WordPiece vocabulary of ``corpus`` as a sentence-transformers folder."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizer

    words = sorted({word for text in corpus for word in re.findall(r"\w+|[^\w\s]", text.lower())})
    characters = sorted({character for word in words for character in word})
    vocabulary = SPECIALS + characters + [f"##{c}" for c in characters] + [w for w in words if w not in characters]
    tokenizer = BertTokenizer(vocab={token: number for number, token in enumerate(vocabulary)}, do_lower_case=True)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(vocabulary),
        hidden_size=hidden_size,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=2 * hidden_size,
        max_position_embeddings=128,
    )
    BertModel(config).save_pretrained(directory, safe_serialization=True)
    tokenizer.save_pretrained(directory)
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    (directory / "modules.json").write_text(json.dumps(modules), encoding="utf-8")
    (directory / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": 64, "do_lower_case": False}), encoding="utf-8"
    )
    (directory / "1_Pooling").mkdir()
    pooling = {"word_embedding_dimension": hidden_size, "pooling_mode_mean_tokens": True}
    (directory / "1_Pooling" / "config.json").write_text(json.dumps(pooling), encoding="utf-8")
    return directory


CORPUS = [
    "Question: What is the capital of France? Answer: Paris is the capital of France.",
    "Question: Who wrote Hamlet? Answer: William Shakespeare wrote the play.",
    "premise hypothesis label entailment neutral contradiction a man plays a guitar on stage",
    "review rating the film was great terrible boring fun 1 2 3 4 5 stars",
    "city country river mountain Berlin Germany Rome Italy Madrid Spain Vienna Austria Danube Tiber",
    "input output text name description dataset with columns qa capitals reviews nli",
]


def tiny_encoder_at(directory: Path) -> SentenceEncoder:
    """Build the tiny encoder into ``directory`` and load it through domainkd (as a local model reference)."""
    return load_encoder(str(build_tiny_encoder(directory, CORPUS)), device="cpu")
