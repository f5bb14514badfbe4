"""What a search is: its options (plain numbers, from config.json or flags) and its loaded resources.

``SearchOptions`` says how to search; ``SearchResources`` holds what was loaded for it (the
token LM for shallow fusion, the word LM for rescoring finals); ``Search`` pairs the two
and derives what the kernels need. Options can be changed per server (``--beam-size``)
without reloading anything.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import cached_property

from server.model.config import DecodingConfig
from server.search.ngram_lm import TokenNgramLM
from server.search.rescoring import Rescorer, WordLM


@dataclass(frozen=True)
class RescoringOptions:
    """Weights of the second pass over final results (``server.search.rescoring.Rescorer``)."""

    weight: float
    word_bonus: float = 0.0
    oov_penalty: float = 0.0
    ctc_weight: float = 0.0


@dataclass(frozen=True)
class SearchOptions:
    """``beam`` 1 is greedy search; more is modified beam search, fused with the token LM at
    ``lm_weight`` (when one is loaded) with ``token_bonus`` per token; ``rescoring`` None
    finalises the best search score."""

    beam: int = 1
    lm_weight: float = 0.0
    # Added per emitted token: shallow fusion makes every token cost an LM log-probability,
    # which, uncompensated, turns into deletions.
    token_bonus: float = 0.0
    rescoring: RescoringOptions | None = None

    @classmethod
    def from_config(cls, decoding: DecodingConfig) -> SearchOptions:
        rescoring = decoding.rescoring
        return cls(
            beam=decoding.beam,
            lm_weight=decoding.lm_weight if decoding.lm_file is not None else 0.0,
            token_bonus=decoding.token_bonus,
            rescoring=None
            if rescoring is None
            else RescoringOptions(rescoring.weight, rescoring.word_bonus, rescoring.oov_penalty, rescoring.ctc_weight),
        )


@dataclass(frozen=True)
class SearchResources:
    """Loaded once per model: the token n-gram LM and the word n-gram LM (either may be absent)."""

    token_lm: TokenNgramLM | None = None
    word_lm: WordLM | None = None


@dataclass(frozen=True)
class Search:
    """Options + resources: everything a search kernel, and a final's rescoring, read."""

    options: SearchOptions = SearchOptions()
    resources: SearchResources = SearchResources()

    @property
    def beam(self) -> int:
        return self.options.beam

    @property
    def fused_lm(self) -> TokenNgramLM | None:
        """The token LM beam search fuses, or None (greedy, no LM, or weight 0)."""
        lm = self.resources.token_lm
        return lm if self.beam > 1 and lm is not None and self.options.lm_weight != 0.0 else None

    @property
    def lm_context_size(self) -> int:
        lm = self.fused_lm
        return 0 if lm is None else lm.context_size

    @cached_property
    def rescorer(self) -> Rescorer | None:
        """The second pass over finals the options and resources define (None without a word LM)."""
        rescoring, lm = self.options.rescoring, self.resources.word_lm
        if rescoring is None or lm is None:
            return None
        return Rescorer(lm, **dataclasses.asdict(rescoring))

    @property
    def final_rescorer(self) -> Rescorer | None:
        """The rescorer finals go through: none under greedy search, which has one hypothesis."""
        return self.rescorer if self.beam > 1 else None

    @property
    def uses_ctc(self) -> bool:
        """Whether finals are rescored with the CTC head (the chunk steps must then return its frames)."""
        rescorer = self.final_rescorer
        return rescorer is not None and rescorer.uses_ctc

    def with_options(self, **changes: object) -> Search:
        """The same resources with some options replaced (e.g. ``beam=16``)."""
        return Search(dataclasses.replace(self.options, **changes), self.resources)  # type: ignore[arg-type]
