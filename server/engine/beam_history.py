"""One stream's hypotheses of the utterance in progress, kept between model steps.

The search returns what each step added (``BeamUpdate``); this keeps the K token histories
it extends, their scores, and the CTC head's frames of the utterance for the final's
rescoring. At a final result it ranks them by ``rescoring.final_scores`` (the scores
``final_hypothesis``, the call whole-utterance decoding makes, chooses by): the first is the
final, the rest its alternatives.
"""

from __future__ import annotations

import math

import torch

from server.model.tokenizer import Tokenizer
from server.search.context_graph import ContextGraph
from server.search.hypotheses import BeamUpdate, Hypothesis, best_index, relink
from server.search.rescoring import Rescorer, final_scores

# Encoder frames of CTC log-probabilities a stream keeps for its final's rescoring (60 s at
# 40 ms, 1.5 MB with 256 tokens); an utterance longer than that is finalised without them.
MAX_CTC_FRAMES = 1500


class BeamHistory:
    """K histories of (token_id, frame) pairs; ``rescorer`` None finalises the best search score.
    ``context_graph``: the stream's phrase boosting, whose unfinished matches are taken back at finals."""

    def __init__(
        self, tokenizer: Tokenizer, rescorer: Rescorer | None, context_graph: ContextGraph | None = None
    ) -> None:
        self._tokenizer = tokenizer
        self._rescorer = rescorer
        self._context_graph = context_graph
        self.reset()

    def reset(self) -> None:
        """A new utterance: no tokens (the model's hypotheses restart with it)."""
        self._hypotheses: list[Hypothesis] | None = None  # None: all empty
        self._scores: list[float] = [0.0]
        # None once the utterance outgrew MAX_CTC_FRAMES (then the word LM alone rescores).
        self._ctc_chunks: list[torch.Tensor] | None = []
        self._ctc_frames = 0

    def extend(self, update: BeamUpdate, ctc_log_probs: torch.Tensor | None) -> None:
        """Apply one step's update; ``ctc_log_probs`` (num_frames, V) are kept for the final."""
        self._hypotheses = relink(self._hypotheses, update)
        self._scores = update.scores
        if ctc_log_probs is not None and self._ctc_chunks is not None and self._rescorer is not None:
            self._ctc_frames += ctc_log_probs.shape[0]
            if self._ctc_frames > MAX_CTC_FRAMES:
                self._ctc_chunks = None  # bound the memory of a stream that never pauses
            else:
                self._ctc_chunks.append(ctc_log_probs)

    def best(self) -> Hypothesis:
        """The hypothesis with the best search score (what partial results show)."""
        return [] if self._hypotheses is None else self._hypotheses[best_index(self._scores)]

    def live(self) -> list[tuple[Hypothesis, float]]:
        """The live hypotheses with their search scores, in beam order (unused slots left out)."""
        if self._hypotheses is None:
            return []
        return [(h, s) for h, s in zip(self._hypotheses, self._scores, strict=True) if math.isfinite(s)]

    def final(self) -> Hypothesis:
        """The hypothesis to finalise: the rescorer's choice when there is one."""
        ranked = self.ranked()
        return ranked[0][0] if ranked else []

    def ranked(self) -> list[tuple[Hypothesis, float]]:
        """The live hypotheses with their final scores, best first (the first of equals first):
        the rescorer's scores when there is one, else the search's."""
        if self._hypotheses is None:
            return []
        scores = self._scores
        if self._rescorer is not None or self._context_graph is not None:
            ctc = torch.cat(self._ctc_chunks) if self._ctc_chunks else None
            scores = final_scores(
                self._hypotheses,
                scores,
                self._rescorer,
                self._tokenizer.decode,
                ctc,
                self._tokenizer.blank_id,
                self._context_graph,
                self._tokenizer.cc_id,
            )
        order = sorted(range(len(scores)), key=lambda k: -scores[k])  # stable: equals keep beam order
        return [(self._hypotheses[k], scores[k]) for k in order if math.isfinite(scores[k])]
