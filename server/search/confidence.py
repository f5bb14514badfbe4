"""Posterior probabilities of a stream's K hypotheses, from the search's (or the rescorer's) scores.

The beam's scores are log-scores of whole hypotheses (transducer log-probability, fused LM,
token bonus; on finals also the word LM and CTC terms). A softmax over the K live ones turns
them into a distribution over the hypotheses the search kept; ``scale`` (a temperature's
inverse) corrects for the scores being sums of weighted terms rather than one log-probability,
and for the probability mass the pruning dropped. The scales are fitted on held-out speech
(``benchmarks/confidence.py --fit``, decision 0020).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

# Fitted on held-out utterances 100-199 for en-small (default search), decision 0020.
FINAL_SCALE = 0.5
PARTIAL_SCALE = 0.7
# Confidences are reported in (0, 1]: a hypothesis the softmax underflows for gets this.
MIN_CONFIDENCE = 1e-6


def posteriors(scores: Sequence[float], scale: float) -> list[float]:
    """softmax(scale * scores) over the finite scores (K,); -inf (an unused slot) gets 0.

    A single live hypothesis (greedy search) gets 1.
    """
    finite = [s for s in scores if math.isfinite(s)]
    if not finite:
        return [0.0] * len(scores)
    top = max(finite)
    weights = [math.exp(scale * (s - top)) if math.isfinite(s) else 0.0 for s in scores]
    total = sum(weights)
    return [w / total for w in weights]


def bounded(probability: float) -> float:
    """A probability as a reported confidence: in [MIN_CONFIDENCE, 1]."""
    return min(1.0, max(MIN_CONFIDENCE, probability))
