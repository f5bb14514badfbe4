"""Token emission times of a single-talker utterance: a Viterbi (forced) alignment with the CTC head.

The CTC head's per-frame log-probabilities (T, V) are aligned with the utterance's tokens by the
Viterbi recursion over CTC's blank-extended label sequence (Graves et al., ICML 2006, section
4.1: the forward recursion with max in place of sum, then a traceback). The best path assigns
every token a run of consecutive frames, in order; its first and last frame date the token.

Alignment runs on the whole utterance with full context (the CTC head is trained under full
context too, by dynamic chunk training): the times say where a token is in the audio, not when a
streaming model could emit it, which is what t-SOT's ordering needs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from server.model.frontend import compute_fbank
from server.model.transducer import StreamingTransducer
from training.text_normalize import normalize_text

# Back-pointer moves of the recursion: stay on the same extended label, advance one, skip a blank.
STAY, ADVANCE, SKIP = 0, 1, 2


def ctc_viterbi(log_probs: np.ndarray, tokens: list[int], blank: int) -> list[tuple[int, int]]:
    """The best CTC path's (first_frame, last_frame) of each token, in order.

    log_probs: (T, V) per-frame log-probabilities; tokens: (U,) label ids, none of them ``blank``.
    Raises ValueError when no path exists (T is shorter than U plus the repeated neighbours,
    each of which needs a blank between).
    """
    if not tokens:
        return []
    num_frames = log_probs.shape[0]
    # Extended labels: blank, y1, blank, y2, ..., yU, blank (S = 2U + 1).
    extended = np.full(2 * len(tokens) + 1, blank, dtype=np.int64)
    extended[1::2] = tokens
    size = extended.size
    # A move s-2 -> s skips a blank between two different labels (never between repeats).
    can_skip = np.zeros(size, dtype=bool)
    can_skip[2:] = (extended[2:] != blank) & (extended[2:] != extended[:-2])
    emissions = log_probs[:, extended].astype(np.float64)  # (T, S)
    score = np.full(size, -np.inf)
    score[:2] = emissions[0, :2]
    back = np.zeros((num_frames, size), dtype=np.int8)
    for t in range(1, num_frames):
        advance = np.concatenate(([-np.inf], score[:-1]))
        skip = np.where(can_skip, np.concatenate(([-np.inf, -np.inf], score[:-2])), -np.inf)
        candidates = np.stack([score, advance, skip])  # (3, S): rows STAY, ADVANCE, SKIP
        back[t] = np.argmax(candidates, axis=0)
        score = candidates[back[t], np.arange(size)] + emissions[t]
    # The path ends on the last label or the trailing blank.
    state = size - 1 if score[size - 1] >= score[size - 2] else size - 2
    if not np.isfinite(score[state]):
        raise ValueError(f"no CTC alignment of {len(tokens)} tokens in {num_frames} frames")
    path = np.empty(num_frames, dtype=np.int64)  # extended-label index per frame
    for t in range(num_frames - 1, -1, -1):
        path[t] = state
        state -= int(back[t, state])
    spans: list[tuple[int, int]] = []
    for index in range(len(tokens)):
        frames = np.flatnonzero(path == 2 * index + 1)
        spans.append((int(frames[0]), int(frames[-1])))
    return spans


@dataclass(frozen=True)
class TokenAlignment:
    """An utterance's tokens and where each one is, in seconds from the start of its audio."""

    tokens: list[int]
    pieces: list[str]
    start_s: list[float]
    end_s: list[float]

    def to_json(self) -> dict:
        return {"tokens": self.tokens, "pieces": self.pieces, "start": self.start_s, "end": self.end_s}

    @classmethod
    def from_json(cls, entry: dict) -> TokenAlignment:
        return cls(list(entry["tokens"]), list(entry["pieces"]), list(entry["start"]), list(entry["end"]))


@torch.inference_mode()
def ctc_log_probs(model: StreamingTransducer, samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """The CTC head's log-probabilities of one utterance, full context: (T', V), T' encoder frames."""
    features = torch.from_numpy(compute_fbank(samples, sample_rate, model.config.features))[None]  # (1, T, F)
    lengths = torch.tensor([features.shape[1]])
    encoder_out, out_lengths = model.encode_utterances(features, lengths, streaming=False)  # (1, T', D)
    return model.ctc_log_probs(encoder_out)[0, : int(out_lengths[0])].cpu().numpy()


def align(model: StreamingTransducer, samples: np.ndarray, sample_rate: int, text: str) -> TokenAlignment:
    """Token times of ``text`` (normalized, tokenized by the model) in ``samples`` (n,) at ``sample_rate``.

    A token spans from its first frame's start to its last frame's end (40 ms frames).
    """
    tokens = model.tokenizer.encode(normalize_text(text))
    log_probs = ctc_log_probs(model, samples, sample_rate)
    spans = ctc_viterbi(log_probs, tokens, model.tokenizer.blank_id)
    frame_s = model.frame_shift_ms / 1000.0
    return TokenAlignment(
        tokens=list(tokens),
        pieces=[model.tokenizer.id_to_piece(t) for t in tokens],
        start_s=[round(first * frame_s, 3) for first, _ in spans],
        end_s=[round((last + 1) * frame_s, 3) for _, last in spans],
    )
