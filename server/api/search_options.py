"""The search-related options of a ``RecognitionConfig``, checked: the N-best size and the speech
contexts (phrase boosting), tokenized into the stream's context graph.

Every rejection is an INVALID_ARGUMENT ``RequestError`` whose message says what is accepted.
"""

from __future__ import annotations

import unicodedata

from asr_client.api.asr.v1 import asr_pb2

from server.api.errors import invalid_argument, shown
from server.model.tokenizer import Tokenizer
from server.search.context_graph import ContextGraph, Phrase, build_context_graph

MAX_ALTERNATIVES = 10


def max_alternatives(config: asr_pb2.RecognitionConfig) -> int:
    """How many alternatives a final may carry: 0 and 1 both mean one."""
    count = config.max_alternatives
    if not 0 <= count <= MAX_ALTERNATIVES:
        raise invalid_argument(
            f"max_alternatives must be between 0 and {MAX_ALTERNATIVES} (0 and 1 both mean one); got {count}"
        )
    return max(1, count)


# Phrase boosting limits. The graph is built per request, in Python, when the stream opens
# (on the event loop): 10,000 characters make about 4,000 graph states, tens of milliseconds.
MAX_PHRASES = 1000
MAX_PHRASE_CHARS = 100
MAX_TOTAL_CHARS = 10_000
MAX_BOOST = 20.0
DEFAULT_BOOST = 5.0
# Context-graph bonus per matched token, per unit of boost (log-score): the default boost of 5
# gives 3 per token. Half of that (sherpa-onnx's default hotword score) fixes few of the names
# the bundled model misspells; held-out speech with unrelated phrases is unchanged at either
# (docs/benchmarks.md, phrase boosting).
TOKEN_BONUS_PER_BOOST = 0.6
MAX_LISTED_CHARACTERS = 5


def context_graph(config: asr_pb2.RecognitionConfig, tokenizer: Tokenizer, model_name: str) -> ContextGraph | None:
    """The request's speech contexts as one context graph over the model's tokens (None: no phrases)."""
    contexts = config.speech_contexts
    total = sum(len(context.phrases) for context in contexts)
    if total > MAX_PHRASES or len(contexts) > MAX_PHRASES:
        raise invalid_argument(
            f"speech_contexts hold {total} phrases in {len(contexts)} contexts; at most {MAX_PHRASES} phrases "
            f"(of at most {MAX_PHRASE_CHARS} characters each) are accepted"
        )
    characters = sum(len(phrase) for context in contexts for phrase in context.phrases)
    if characters > MAX_TOTAL_CHARS:
        raise invalid_argument(
            f"speech_contexts hold {characters} characters of phrases; at most {MAX_TOTAL_CHARS} in all are accepted"
        )
    phrases = []
    words: set[str] = set()
    for i, context in enumerate(contexts):
        boost = context.boost
        if not 0.0 <= boost <= MAX_BOOST:  # NaN fails too
            raise invalid_argument(
                f"speech_contexts[{i}].boost must be between 0 and {MAX_BOOST:g} (0: the default, {DEFAULT_BOOST:g}); "
                f"got {boost:g}"
            )
        bonus = (boost or DEFAULT_BOOST) * TOKEN_BONUS_PER_BOOST
        for j, phrase in enumerate(context.phrases):
            tokens = _phrase_tokens(phrase, tokenizer, f"speech_contexts[{i}].phrases[{j}]", model_name)
            phrases.append(Phrase(tuple(tokens), bonus))
            words.update(tokenizer.decode(tokens).split())
    if not phrases:
        return None
    return build_context_graph(phrases, tokenizer.vocab_size, frozenset(words))


def _words_of(phrase: str) -> str:
    """The phrase with punctuation and symbols as word breaks ("Dr. O'Neil-Smith" -> "Dr O'Neil Smith"):
    transcripts hold none, so a phrase need not either. An apostrophe inside a word stays."""
    kept = [char if char == "'" or not unicodedata.category(char).startswith(("P", "S")) else " " for char in phrase]
    return " ".join(word.strip("'") for word in "".join(kept).split() if word.strip("'"))


def _phrase_tokens(phrase: str, tokenizer: Tokenizer, where: str, model_name: str) -> list[int]:
    """The phrase's token ids: its words as written, or lowercased when only that is in the model's alphabet."""
    if len(phrase) > MAX_PHRASE_CHARS:
        raise invalid_argument(
            f"{where} has {len(phrase)} characters; at most {MAX_PHRASE_CHARS} are accepted: {shown(phrase)}"
        )
    text = _words_of(phrase)
    if not text:
        raise invalid_argument(f"{where} is empty: a phrase needs a word ({shown(phrase)})")
    for candidate in (text, text.casefold()):
        tokens = tokenizer.encode(candidate)
        if tokenizer.unk_id not in tokens:
            return tokens
    lowered = text.casefold()
    unknown = sorted({char for char in lowered if not char.isspace() and tokenizer.unk_id in tokenizer.encode(char)})
    listed = ", ".join(repr(char) for char in unknown[:MAX_LISTED_CHARACTERS])
    if len(unknown) > MAX_LISTED_CHARACTERS:
        listed += f" and {len(unknown) - MAX_LISTED_CHARACTERS} more"
    raise invalid_argument(
        f"{where} {shown(phrase)} has characters model {model_name!r} cannot write: {listed or 'unknown'}; "
        "write the phrase in the model's alphabet (e.g. without accents, numbers as words)"
    )
