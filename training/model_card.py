"""``asr-train card``: measure a model and write its ``MODEL_CARD.md``.

Every figure in the card comes from this command: held-out WER/CER in streaming and
full-context mode (``training.evaluate``), the real-time factor of the streaming path on
one stream and one thread (``training.speed``), and the training record (trainer.json of
the checkpoint and the training manifest).
"""

from __future__ import annotations

import argparse
import collections
import json
import platform
import shlex
import sys
from pathlib import Path

import torch

from server.model.checkpoint import MODEL_CARD_FILE
from server.model.frames import SUBSAMPLING_FACTOR
from server.search.loading import load_model_and_search
from server.search.options import Search
from training.evaluate import evaluate
from training.search_arguments import describe_search, greedy_variant
from training.speed import real_time_factor


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, required=True, help="model directory to measure and describe")
    parser.add_argument("--heldout", type=Path, required=True, help="held-out manifest (unseen voices and sentences)")
    parser.add_argument(
        "--train-manifest", type=Path, nargs="+", required=True, help="the manifest(s) the model was trained on"
    )
    parser.add_argument("--trainer-json", type=Path, help="trainer.json (default: MODEL/trainer.json)")
    parser.add_argument("--speed-utterances", type=int, default=30)


def _training_data_summary(manifests: list[Path]) -> dict:
    rows = [json.loads(line) for manifest in manifests for line in manifest.read_text().splitlines() if line.strip()]
    return {
        "utterances": len(rows),
        "hours": round(sum(r.get("duration", 0.0) for r in rows) / 3600, 1),
        "voices": len({r.get("voice") for r in rows}),
        "sources": dict(collections.Counter(r.get("source", "?") for r in rows)),
        "sample_rates": dict(sorted(collections.Counter(r.get("sample_rate", 0) for r in rows).items())),
        "words": len({w for r in rows for w in r["text"].split()}),
    }


def _search_text(search: dict) -> str:
    if search["beam"] == 1:
        return "greedy search"
    lm = f", {search['lm_order']}-gram token LM at weight {search['lm_weight']}" if search["lm_order"] else ""
    text = f"modified beam search, beam {search['beam']}{lm}, token bonus {search['token_bonus']}"
    rescoring = search.get("rescoring")
    if rescoring:
        text += (
            f"; finals rescored by a {rescoring['word_lm_order']}-gram word LM"
            f" ({rescoring['word_lm_words']} words) at weight {rescoring['weight']},"
            f" word bonus {rescoring['word_bonus']},"
            f" unknown-word penalty {rescoring['oov_penalty']}"
        )
        if rescoring.get("ctc_weight"):
            text += f", and by the CTC head at weight {rescoring['ctc_weight']}"
    return text


def render_card(
    model,
    search: Search,
    streaming: dict,
    offline: dict,
    speed: dict,
    data: dict,
    trainer: dict,
    command: str,
    greedy: dict | None = None,
) -> str:
    c = model.config
    e = c.encoder
    frame_ms = model.frame_shift_ms
    default_search = _search_text(streaming["search"])
    lm = search.fused_lm
    lm_line = (
        ""
        if lm is None
        else (
            f"- LM: `asr-train lm`, {lm.order}-gram over the tokenizer's pieces, interpolated Kneser-Ney, "
            f"{lm.num_entries} n-grams, from {lm.info.get('sentences', '?')} sentences "
            f"({lm.info.get('tokens', '?')} tokens) of the text mixture "
            f"{lm.info.get('mixture') or lm.info.get('text')}.\n"
        )
    )
    greedy_rows = (
        ""
        if greedy is None
        else (f"| streaming, greedy search (no LM) | {greedy['wer']:.2%} | {greedy['cer']:.2%} |\n")
    )
    greedy_speed = (
        ""
        if greedy is None
        else (f" Greedy search on the same path: real-time factor {greedy['speed']['real_time_factor']:.3f}.")
    )
    return f"""# {c.name}: streaming Conformer-Transducer, English

| | |
|---|---|
| parameters | {model.num_parameters / 1e6:.2f} M (stored as fp16 safetensors) |
| encoder | Conformer, {e.num_layers} blocks, d_model {e.d_model}, {e.num_heads} heads, FFN {e.ffn_dim}, \
conv kernel {e.conv_kernel} (causal), {SUBSAMPLING_FACTOR}x conv subsampling ({frame_ms} ms frames) |
| streaming mask | chunk {e.chunk_size} frames ({e.chunk_size * frame_ms} ms), {e.left_chunks} left chunks \
({e.left_chunks * e.chunk_size * frame_ms} ms history), right context {e.right_context} frames in layer 0 |
| algorithmic latency | {model.latency_ms} ms (chunk + right context) |
| decoder | stateless prediction network (context {c.decoder.context_size}), joiner {c.joiner_dim} |
| search (default) | {default_search} (greedy: at most {c.max_symbols_per_frame} symbols per frame) |
| tokenizer | SentencePiece unigram, {c.tokenizer.vocab_size} pieces, blank id 0, `<cc>` reserved |
| input | 16 kHz mono, 80-dim log-mel fbank (kaldi-native-fbank), other rates resampled |

## Results

Held-out set: `{streaming["manifest"]}` — {streaming["utterances"]} everyday English sentences written
by hand (never in training text), spoken by espeak-ng voice/variant pairs never used in
training, with noise, gain, silence and sample-rate variety.

| mode | WER | CER |
|---|---|---|
| streaming (serving mask, {model.latency_ms} ms latency), default search | {streaming["wer"]:.2%} | \
{streaming["cer"]:.2%} |
| full context (offline), default search | {offline["wer"]:.2%} | {offline["cer"]:.2%} |
{greedy_rows}
Default search: {default_search}.

Decoding speed, streaming path (the engine's batch stepper: slot pool, encoder chunk, default search),
one stream, one thread: real-time factor **{speed["real_time_factor"]:.3f}** ({speed["audio_seconds"]:.0f} s of audio in
{speed["compute_seconds"]:.1f} s) on {platform.machine()} with torch {torch.__version__}.{greedy_speed}

Reproduce: `{command}`

## Training

- Data: `asr-train synth` (espeak-ng): {data["utterances"]} utterances, {data["hours"]} hours,
  {data["voices"]} voice/variant pairs, {data["words"]} distinct words; text sources
  {data["sources"]}; stored sample rates {data["sample_rates"]}.
{lm_line}- Recipe: `asr-train fit` (RNN-T loss plus an auxiliary CTC head, kept to rescore finals, AdamW,
  warm-up + inverse-sqrt learning rate, short-utterances-first curriculum, dynamic chunk
  training with the serving mask most of the time, SpecAugment when switched on), CPU; the exact
  stages are in `training/recipes/en-small.sh`.
- Progress at this checkpoint: step {trainer.get("step", "?")}, {trainer.get("hours_seen", 0):.1f} hours
  of audio seen, best streaming validation WER during training {trainer.get("best_wer", float("nan")):.2%}
  (generated training-style sentences spoken by held-out voices; greedy, on cached features).

## Limitations

Trained only on synthetic speech (espeak-ng formant voices): expect far higher error rates on
human recordings. The LM knows only the generated training-text mixture (Wikipedia-style
clauses, an everyday-English grammar, frequent words), so domain words outside it are
harder. Interim results under beam search can revise earlier words; finals are stable.
Lowercase output without punctuation; numbers come out as words.
"""


def run(args: argparse.Namespace) -> int:
    torch.set_num_threads(1)  # the speed figures are for one core
    model, search = load_model_and_search(args.model)
    speed = real_time_factor(model, search, args.heldout, args.speed_utterances)
    greedy_search = greedy_variant(search)
    greedy_speed = real_time_factor(model, greedy_search, args.heldout, args.speed_utterances)
    torch.set_num_threads(2)
    streaming = evaluate(model, search, args.heldout, streaming=True, print_lines=False)
    offline = evaluate(model, search, args.heldout, streaming=False, print_lines=False)
    streaming["search"] = offline["search"] = describe_search(search)
    greedy_result = None
    if search.beam > 1:
        greedy_result = evaluate(model, greedy_search, args.heldout, streaming=True, print_lines=False)
        greedy_result["speed"] = greedy_speed
    streaming["manifest"] = str(args.heldout)
    trainer_json = args.trainer_json or args.model / "trainer.json"
    trainer = json.loads(trainer_json.read_text()) if trainer_json.is_file() else {}
    data = _training_data_summary(args.train_manifest)
    command = "asr-train " + shlex.join(sys.argv[1:]) if sys.argv[0].endswith("asr-train") else "asr-train card …"
    card = render_card(model, search, streaming, offline, speed, data, trainer, command, greedy_result)
    (args.model / MODEL_CARD_FILE).write_text(card)
    print(
        json.dumps(
            {
                "streaming": streaming,
                "offline": offline,
                "speed": speed,
                "greedy_streaming": greedy_result,
                "data": data,
            }
        )
    )
    return 0
