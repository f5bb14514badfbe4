"""A new five-language CMM model for ``asr-train fit``: tokenizer, token-language table, encoder.

- One SentencePiece tokenizer over every language's training text, each language sampled to an
  equal share, so the smaller languages are not split into letters.
- The token-language table (V, K): a token belongs to every language whose training text uses
  it; blank and the special symbols belong to all. A stream may only emit its languages' tokens.
- The encoder: Whisper's (``--whisper-encoder DIR``, ``asr-train convert-whisper`` output), or a
  Conformer trained from scratch, with one low-rank expert per language in every block.
- Language subsets for training (Zhou et al. 2022): each utterance's mask holds its own language
  plus each other language with probability ``other_prob``, or all languages with ``all_prob``.
"""

from __future__ import annotations

import argparse
import random
from collections.abc import Sequence
from pathlib import Path

import torch

from server.model.config import DecoderConfig, EncoderConfig, FeatureConfig, ModelConfig, TokenizerConfig
from server.model.tokenizer import CHANNEL_CHANGE_PIECE, Tokenizer, train_tokenizer
from server.model.transducer import StreamingTransducer
from training.whisper.init_encoder import WHISPER_FEATURES, load_whisper_weights, read_converted, whisper_encoder_config

# The product's languages, in the order of the model's language mask.
LANGUAGE_ORDER = ("en", "de", "fr", "es", "it")


def model_languages(present: Sequence[str]) -> list[str]:
    """The languages of the training data in the product's order (others after, sorted)."""
    found = set(present)
    return [code for code in LANGUAGE_ORDER if code in found] + sorted(found - set(LANGUAGE_ORDER))


def balanced_texts(texts: Sequence[str], languages: Sequence[str], per_language: int, seed: int = 0) -> list[str]:
    """Up to ``per_language`` texts of each language (sampled), for an even tokenizer."""
    rng = random.Random(seed)
    by_language: dict[str, list[str]] = {}
    for text, language in zip(texts, languages, strict=True):
        by_language.setdefault(language, []).append(text)
    chosen: list[str] = []
    for language in sorted(by_language):
        pool = by_language[language]
        chosen += pool if len(pool) <= per_language else rng.sample(pool, per_language)
    return chosen


def token_language_table(
    tokenizer: Tokenizer, texts: Sequence[str], languages: Sequence[str], order: Sequence[str]
) -> torch.Tensor:
    """(V, K) bool: which languages' texts use each token; blank and user symbols belong to all."""
    table = torch.zeros(tokenizer.vocab_size, len(order), dtype=torch.bool)
    column = {code: k for k, code in enumerate(order)}
    for text, language in zip(texts, languages, strict=True):
        table[torch.tensor(tokenizer.encode(text), dtype=torch.int64), column[language]] = True
    table[tokenizer.blank_id] = True
    if tokenizer.cc_id is not None:
        table[tokenizer.cc_id] = True
    return table


def sample_language_weights(
    languages: Sequence[str], order: Sequence[str], rng: random.Random, other_prob: float = 0.25, all_prob: float = 0.2
) -> torch.Tensor:
    """(B, K) multi-hot masks, each holding its utterance's own language (normalised by the model)."""
    weights = torch.zeros(len(languages), len(order))
    for row, language in enumerate(languages):
        if rng.random() < all_prob:
            weights[row] = 1.0
            continue
        for k, code in enumerate(order):
            weights[row, k] = 1.0 if code == language or rng.random() < other_prob else 0.0
    return weights


def true_language_weights(languages: Sequence[str], order: Sequence[str]) -> torch.Tensor:
    """(B, K) one-hot masks of the utterances' own languages (validation: the language selected)."""
    return torch.tensor([[1.0 if code == language else 0.0 for code in order] for language in languages])


def scratch_encoder_config(args: argparse.Namespace, language_experts: bool = False) -> EncoderConfig:
    """The Conformer encoder ``asr-train fit``'s model options describe (trained from scratch)."""
    return EncoderConfig(
        d_model=args.d_model,
        num_layers=args.num_layers,
        num_heads=args.num_heads,
        ffn_dim=args.ffn_dim,
        chunk_size=args.chunk_size,
        left_chunks=args.left_chunks,
        right_context=args.right_context,
        language_experts=language_experts,
    )


def feature_config(args: argparse.Namespace) -> FeatureConfig:
    """The front end a new model of these options reads."""
    return WHISPER_FEATURES if getattr(args, "whisper_encoder", None) else FeatureConfig()


def build_multilingual_model(
    args: argparse.Namespace, texts: Sequence[str], languages: Sequence[str], exp_dir: Path
) -> StreamingTransducer:
    """A fresh CMM model for the training texts and their languages."""
    order = model_languages(languages)
    tokenizer_texts = balanced_texts(texts, languages, per_language=20_000, seed=args.seed)
    tokenizer_file = train_tokenizer(tokenizer_texts, exp_dir / "tokenizer", args.vocab_size, [CHANNEL_CHANGE_PIECE])
    tokenizer = Tokenizer(tokenizer_file)
    if args.whisper_encoder:
        tensors, dims = read_converted(Path(args.whisper_encoder))
        tensors = _lower_blocks(tensors, getattr(args, "whisper_layers", None) or dims["num_layers"])
        encoder = whisper_encoder_config(
            dims,
            ffn_dim=args.whisper_ffn_dim or dims["ffn_dim"],
            language_experts=True,
            dropout=0.1,
            num_layers=_whisper_blocks(tensors) + getattr(args, "new_layers", 0),
        )
    else:
        tensors = None
        encoder = scratch_encoder_config(args, language_experts=True)
    config = ModelConfig(
        name=args.name,
        languages=order,
        features=feature_config(args),
        encoder=encoder,
        decoder=DecoderConfig(),
        tokenizer=TokenizerConfig(file=tokenizer_file.name, vocab_size=tokenizer.vocab_size),
    )
    model = StreamingTransducer(config, tokenizer)
    if tensors is not None:
        load_whisper_weights(model.encoder, _pruned_ffn(tensors, encoder.ffn_dim))
        _silence_new_blocks(model, _whisper_blocks(tensors))
    if model.token_languages is not None:  # one language (a Whisper encoder on English alone): no table
        model.token_languages.copy_(token_language_table(tokenizer, texts, languages, order))
    return model


def _silence_new_blocks(model: StreamingTransducer, first: int) -> None:
    """Blocks from ``first`` on (``--new-layers``) start as the identity: the output layer of each
    of their modules is zero, so the heads first see Whisper's block-``first`` features. Random
    blocks on top of frozen ones wiped those features out at the all-blank start (a probe of their
    output fell to chance while the frozen block below kept its 3.7 per token)."""
    with torch.no_grad():
        for index in range(first, len(model.encoder.layers)):
            prefix = f"layers.{index}."
            names = ("attention.out", "ffn1.net.4", "ffn2.net.4", "conv.pointwise_out")
            for name in names:
                layer = model.encoder.get_submodule(prefix + name)
                assert isinstance(layer, torch.nn.Linear)
                layer.weight.zero_()
                layer.bias.zero_()


def _whisper_blocks(tensors: dict[str, torch.Tensor]) -> int:
    return sum(1 for name in tensors if name.startswith("layers.") and name.endswith(".attn.q.weight"))


def _lower_blocks(tensors: dict[str, torch.Tensor], keep: int) -> dict[str, torch.Tensor]:
    """Whisper's tensors without the blocks from ``keep`` on (its top blocks serve its decoder and
    carry less for a linear CTC probe than the middle ones: decision 0018)."""
    if keep > _whisper_blocks(tensors):
        raise ValueError(f"--whisper-layers {keep}: this Whisper encoder has {_whisper_blocks(tensors)} blocks")
    return {
        name: tensor
        for name, tensor in tensors.items()
        if not name.startswith("layers.") or int(name.split(".")[1]) < keep
    }


def _pruned_ffn(tensors: dict[str, torch.Tensor], ffn_dim: int) -> dict[str, torch.Tensor]:
    """Whisper's FFNs cut to their ``ffn_dim`` most important hidden units (|fc1 row| x |fc2 column|),
    to fit the FLOP budget; the rest of the tensors unchanged."""
    pruned = dict(tensors)
    for name in [n for n in tensors if n.endswith("ffn.fc1.weight")]:
        prefix = name[: -len("fc1.weight")]
        fc1, fc2 = tensors[prefix + "fc1.weight"], tensors[prefix + "fc2.weight"]
        if fc1.shape[0] <= ffn_dim:
            continue
        keep = (fc1.norm(dim=1) * fc2.norm(dim=0)).topk(ffn_dim).indices.sort().values
        pruned[prefix + "fc1.weight"] = fc1[keep]
        pruned[prefix + "fc1.bias"] = tensors[prefix + "fc1.bias"][keep]
        pruned[prefix + "fc2.weight"] = fc2[:, keep]
    return pruned
