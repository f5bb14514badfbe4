"""``asr-train lm``: build the token n-gram LM for shallow fusion (or, with ``--words``, the word
n-gram LM that rescores final results) and make it a model's default.

The text is the training-text mixture of ``training.text_sources`` (held-out and CI
sentences are never produced), drawn from its own seed, so the LM sees the same kind of
language as the acoustic model but far more of it: text costs nothing, speech costs CPU
hours. It is tokenized with the model's own tokenizer, because the LM scores the
transducer's tokens.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import sentencepiece as spm
from tqdm import tqdm

from server.model.checkpoint import CONFIG_FILE, read_config
from server.model.config import RescoringConfig
from server.model.tokenizer import Tokenizer
from server.search.ngram_lm import LM_FILE, build_ngram_lm
from server.search.rescoring import MAX_WORDS, WORD_LM_FILE, build_word_lm
from training.arpa import token_lm_from_arpa, word_lm_from_arpa
from training.text_sources import MixtureWeights, TrainingSentences

# Fewer random word lists than the acoustic training mix: they teach the LM nothing about
# word order, and the acoustic model already has them for vocabulary coverage.
DEFAULT_LM_MIXTURE = "markov=0.45,wordfreq=0.10,everyday=0.45"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, required=True, help="model directory (its tokenizer is used)")
    parser.add_argument("--sentences", type=int, default=200_000, help="sentences of generated text")
    parser.add_argument("--text", type=Path, help="use this text file (one sentence a line) instead")
    parser.add_argument(
        "--arpa",
        type=Path,
        help="import this ARPA n-gram file (plain or .gz; over the model's BPE pieces, or over words with "
        "--words) instead of building one (training/arpa.py)",
    )
    parser.add_argument("--mixture", default=DEFAULT_LM_MIXTURE, help="text source weights (see synth --mixture)")
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--order", type=int, help="n-gram order (default: 4 over tokens, 3 with --words)")
    parser.add_argument("--min-count", type=int, default=1, help="drop highest-order n-grams seen fewer times")
    parser.add_argument("--out", type=Path, help=f"LM file (default: MODEL/{LM_FILE})")
    parser.add_argument(
        "--set-default",
        action="store_true",
        help="write the LM and the search below into MODEL/config.json as its default decoding",
    )
    parser.add_argument("--beam", type=int, default=4)
    parser.add_argument("--lm-weight", type=float, default=0.3)
    parser.add_argument("--token-bonus", type=float, default=1.0)
    words = parser.add_argument_group("word LM for rescoring final results (instead of the token LM)")
    words.add_argument(
        "--words",
        action="store_true",
        help=f"build the word LM (default file MODEL/{WORD_LM_FILE}); --order is then over words",
    )
    words.add_argument("--max-words", type=int, default=MAX_WORDS, help="vocabulary: the most frequent words")
    words.add_argument("--min-word-count", type=int, default=2, help="rarer words count as the unknown word")
    words.add_argument("--rescore-weight", type=float, default=0.5, help="with --set-default")
    words.add_argument("--word-bonus", type=float, default=0.0, help="with --set-default")
    words.add_argument("--oov-penalty", type=float, default=0.0, help="with --set-default")


def generate_text(count: int, mixture: str, seed: int) -> list[str]:
    sentences = TrainingSentences(MixtureWeights.parse(mixture))
    rng = random.Random(seed)
    return [sentences.sample(rng)[0] for _ in tqdm(range(count), desc="text", unit="sentence")]


def set_default_decoding(model_dir: Path, lm_file: str, beam: int, lm_weight: float, token_bonus: float) -> None:
    """Rewrite config.json's decoding section (validated through ModelConfig)."""
    config = read_config(model_dir)
    config.decoding = config.decoding.model_validate(
        {
            "beam": beam,
            "lm_file": lm_file,
            "lm_weight": lm_weight,
            "token_bonus": token_bonus,
            "rescoring": config.decoding.rescoring,
        }
    )
    (model_dir / CONFIG_FILE).write_text(config.model_dump_json(indent=2) + "\n")


def set_default_rescoring(
    model_dir: Path,
    word_lm_file: str,
    weight: float,
    word_bonus: float,
    oov_penalty: float,
    beam: int | None = None,
    ctc_weight: float = 0.0,
) -> None:
    """Rewrite config.json's decoding.rescoring section, and the beam if given (the beam the
    weights were tuned at); the LM fusion settings stay."""
    config = read_config(model_dir)
    decoding = config.decoding.model_dump()
    decoding["rescoring"] = RescoringConfig(
        word_lm_file=word_lm_file, weight=weight, word_bonus=word_bonus, oov_penalty=oov_penalty, ctc_weight=ctc_weight
    ).model_dump()
    if beam is not None:
        decoding["beam"] = beam
    config.decoding = config.decoding.model_validate(decoding)
    (model_dir / CONFIG_FILE).write_text(config.model_dump_json(indent=2) + "\n")


def run(args: argparse.Namespace) -> int:
    config = read_config(args.model)
    tokenizer = Tokenizer(args.model / config.tokenizer.file, config.tokenizer.channel_change_token)
    started = time.perf_counter()
    if args.arpa:
        return _import_arpa(args, tokenizer, started)
    if args.text:
        text = [line.strip() for line in args.text.read_text().splitlines() if line.strip()]
    else:
        text = generate_text(args.sentences, args.mixture, args.seed)
    args.order = args.order or (3 if args.words else 4)
    info = {
        "sentences": len(text),
        "order": args.order,
        "mixture": None if args.text else args.mixture,
        "seed": None if args.text else args.seed,
        "text": str(args.text) if args.text else None,
    }
    if args.words:
        word_lm = build_word_lm(text, order=args.order, max_words=args.max_words, min_count=args.min_word_count)
        out = args.out or args.model / WORD_LM_FILE
        info.update(words=len(word_lm.words), min_word_count=args.min_word_count)
        word_lm.save(out, info)
        entries = word_lm.ngram.num_entries
    else:
        sequences = [tokenizer.encode(line) for line in text]
        lm = build_ngram_lm(sequences, tokenizer.vocab_size, order=args.order, min_count=args.min_count)
        out = args.out or args.model / LM_FILE
        info.update(tokens=sum(map(len, sequences)), min_count=args.min_count)
        lm.save(out, metadata=info)
        entries = lm.num_entries
    _finish(args, out, info, entries, started)
    return 0


def _import_arpa(args: argparse.Namespace, tokenizer: Tokenizer, started: float) -> int:
    """``--arpa``: the user's n-gram file as our token LM (or word LM with ``--words``)."""
    info: dict[str, object] = {"arpa": str(args.arpa)}
    if args.words:
        word_lm = word_lm_from_arpa(args.arpa)
        out = args.out or args.model / WORD_LM_FILE
        info.update(order=word_lm.ngram.order, words=len(word_lm.words))
        word_lm.save(out, info)
        entries = word_lm.ngram.num_entries
    else:
        config = read_config(args.model)
        pieces = spm.SentencePieceProcessor(model_file=str(args.model / config.tokenizer.file))

        def piece_id(piece: str) -> int | None:
            index = pieces.piece_to_id(piece)
            return None if index == pieces.unk_id() and piece != pieces.id_to_piece(index) else index

        lm = token_lm_from_arpa(args.arpa, piece_id, tokenizer.vocab_size, tokenizer.blank_id)
        out = args.out or args.model / LM_FILE
        info.update(order=lm.order)
        lm.save(out, metadata=info)
        entries = lm.num_entries
    _finish(args, out, info, entries, started)
    return 0


def _finish(args: argparse.Namespace, out: Path, info: dict, entries: int, started: float) -> None:
    """--set-default, then the summary line."""
    if args.set_default:
        if out.parent.resolve() != args.model.resolve():
            raise SystemExit(f"--set-default needs the LM inside the model directory, not {out}")
        if args.words:
            set_default_rescoring(args.model, out.name, args.rescore_weight, args.word_bonus, args.oov_penalty)
        else:
            set_default_decoding(args.model, out.name, args.beam, args.lm_weight, args.token_bonus)
    info.update(
        file=str(out), entries=entries, bytes=out.stat().st_size, seconds=round(time.perf_counter() - started, 1)
    )
    print(json.dumps(info))
