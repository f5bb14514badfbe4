"""Phrase boosting (speech_contexts): the context graph, the search with it, and a real server.

The graph: trie, per-token bonus, take-back of unfinished matches, failure transitions, and
its tensor and Python forms agreeing. The search: a stream's phrases pull its hypotheses,
batched streams with different graphs (or none) get what they get alone, a stream without
one bit for bit what it gets with no boosting anywhere, streamed equals whole-utterance. A
real server: names the bundled model misspells come out right with boosting, and the
INVALID_ARGUMENT cases.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import grpc
import numpy as np
import pytest
import torch
from asr_client.api.asr.v1 import asr_pb2, asr_pb2_grpc
from asr_harness import ServerThread, config, fixed_chunks, requires_espeak, stream, synthesize
from model_helpers import NO_ENDPOINTS

from server.api.search_options import DEFAULT_BOOST, TOKEN_BONUS_PER_BOOST, context_graph
from server.engine.decoder import StreamOptions
from server.engine.offline import decode_streams, final_text
from server.model.checkpoint import DEFAULT_MODEL_DIR, load_model
from server.model.transducer import StreamingTransducer
from server.search.context_graph import ContextGraph, Phrase, build_context_graph
from server.search.options import Search, SearchOptions
from server.search.utterances import final_hypotheses, search_utterances

BONUS = 1.5


# -- the context graph -------------------------------------------------------------------------
def _graph(*phrases: Sequence[int], bonus: float = BONUS, vocab: int = 10) -> ContextGraph:
    return build_context_graph([Phrase(tuple(p), bonus) for p in phrases], vocab)


def _scores(graph: ContextGraph, tokens: Sequence[int]) -> tuple[list[float], int]:
    """Each token's score through ``graph.step`` (the search's tensors), and the state reached."""
    state, deltas = 0, []
    for token in tokens:
        delta, following = graph.step(torch.tensor([state]))
        deltas.append(float(delta[0, token]))
        state = int(following[0, token])
    return deltas, state


def test_each_matched_token_earns_the_bonus_and_a_complete_phrase_keeps_it() -> None:
    graph = _graph([1, 2, 3])
    deltas, state = _scores(graph, [1, 2, 3, 5, 5])
    assert deltas == pytest.approx([BONUS, BONUS, BONUS, 0.0, 0.0])
    assert graph.potential_of([1, 2, 3]) == 0.0 and state == 0
    assert graph.potential_of([1, 2]) == pytest.approx(2 * BONUS)  # on loan, taken back at a final


def test_a_failed_match_gives_back_what_it_earned() -> None:
    graph = _graph([1, 2, 3])
    deltas, state = _scores(graph, [1, 2, 4])
    assert sum(deltas) == pytest.approx(0.0) and deltas[-1] == pytest.approx(-2 * BONUS)
    assert state == 0
    # Blank never reaches the graph; a repeated start token restarts the match rather than losing it.
    deltas, _ = _scores(graph, [1, 1, 2, 3])
    assert sum(deltas) == pytest.approx(3 * BONUS)


def test_a_failed_match_falls_back_to_the_longest_suffix_still_matched() -> None:
    """Phrases 1 2 3 and 2 4: after 1 2, token 4 completes 2 4 (its bonus kept), not 1 2 3."""
    graph = _graph([1, 2, 3], [2, 4])
    deltas, state = _scores(graph, [1, 2, 4])
    assert sum(deltas) == pytest.approx(2 * BONUS)
    assert graph.potential[state] == 0.0
    deltas, _ = _scores(graph, [1, 2, 5])
    assert sum(deltas) == pytest.approx(0.0)


def test_a_phrase_inside_a_longer_one_is_banked_and_the_longer_one_earns_on() -> None:
    """new york / new york city: york banks 'new york'; failing after 'city' keeps it."""
    graph = _graph([1, 2], [1, 2, 3, 4])
    deltas, _ = _scores(graph, [1, 2, 3, 7])
    assert deltas == pytest.approx([BONUS, BONUS, BONUS, -BONUS])
    assert graph.potential_of([1, 2, 3]) == pytest.approx(BONUS)
    assert sum(_scores(graph, [1, 2, 3, 4])[0]) == pytest.approx(4 * BONUS)


def test_shared_prefixes_earn_the_larger_bonus_of_their_phrases() -> None:
    graph = build_context_graph([Phrase((1, 2), 1.0), Phrase((1, 3), 4.0)], 10)
    deltas, _ = _scores(graph, [1, 2])
    assert deltas == pytest.approx([4.0, 1.0])
    assert sum(_scores(graph, [1, 3])[0]) == pytest.approx(8.0)


def test_tensor_steps_agree_with_the_python_walk_on_random_graphs() -> None:
    rng = np.random.default_rng(0)
    vocab = 6
    for _ in range(20):
        phrases = [
            Phrase(tuple(int(t) for t in rng.integers(1, vocab, rng.integers(1, 5))), float(rng.uniform(0.5, 3)))
            for _ in range(rng.integers(1, 6))
        ]
        graph = build_context_graph(phrases, vocab)
        states = torch.arange(graph.num_states)
        delta, following = graph.step(states)
        for state in range(graph.num_states):
            for token in range(vocab):
                nxt = graph.next_state(state, token)
                assert int(following[state, token]) == nxt
                assert float(delta[state, token]) == pytest.approx(float(graph.gain[nxt] - graph.potential[state]))
        # Any token sequence: the scores sum to what is banked plus what is on loan, never below 0.
        tokens = [int(t) for t in rng.integers(0, vocab, 30)]
        deltas, state = _scores(graph, tokens)
        assert sum(deltas) - float(graph.potential[state]) >= -1e-5
        assert graph.walk(tokens) == state


def test_tokens_outside_the_vocabulary_are_refused() -> None:
    with pytest.raises(ValueError, match="outside the vocabulary"):
        build_context_graph([Phrase((3, 12), 1.0)], 10)


# -- the search --------------------------------------------------------------------------------
def _features(lengths: Sequence[int], seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((n, 80)).astype(np.float32) for n in lengths]


def _stream(
    model: StreamingTransducer,
    search: Search,
    utterances: list[np.ndarray],
    graphs: Sequence[ContextGraph | None],
    join_at: Sequence[int] | None = None,
) -> list[tuple[tuple[tuple[int, int], ...], float]]:
    """Each stream's final tokens and confidence, fbank streamed in pieces of 17 frames, no endpoints."""
    pieces = [[u[s : s + 17] for s in range(0, len(u), 17)] for u in utterances]
    options = [StreamOptions(interim_results=False, endpoint=NO_ENDPOINTS.endpoint, context_graph=g) for g in graphs]
    updates = decode_streams(model, search, pieces, options, join_at=join_at, features=True)
    results = [[r for u in stream_updates for r in u.results if r.is_final] for stream_updates in updates]
    return [(tuple(p for r in finals for p in r.tokens), finals[0].confidence if finals else 0.0) for finals in results]


def _phrase_graph(tokens: Sequence[int], bonus: float, vocab: int) -> ContextGraph:
    return build_context_graph([Phrase(tuple(tokens), bonus)], vocab)


@pytest.mark.parametrize("beam", [1, 4])
def test_a_phrase_pulls_the_search_towards_it(model: StreamingTransducer, beam: int) -> None:
    vocab = model.tokenizer.vocab_size
    phrase = [5, 9, 5, 9]
    utterances = _features([80, 80], seed=3)
    search = Search(SearchOptions(beam=beam))

    def occurrences(graphs: Sequence[ContextGraph | None]) -> int:
        count = 0
        for tokens, _ in _stream(model, search, utterances, graphs):
            ids = [t for t, _ in tokens]
            count += sum(ids[i : i + len(phrase)] == phrase for i in range(len(ids)))
        return count

    assert occurrences([None, None]) == 0
    graph = _phrase_graph(phrase, 4.0, vocab)
    assert occurrences([graph, graph]) >= 2


@pytest.mark.parametrize("beam", [1, 4])
def test_batched_streams_with_mixed_contexts_get_what_they_get_alone(model: StreamingTransducer, beam: int) -> None:
    vocab = model.tokenizer.vocab_size
    search = Search(SearchOptions(beam=beam))
    utterances = _features([157, 60, 111, 23, 90], seed=1)
    graphs = [
        _phrase_graph([5, 9, 5], 2.0, vocab),
        None,
        build_context_graph([Phrase((7, 3), 1.0), Phrase((7, 3, 11, 4), 3.0), Phrase((3, 11), 2.0)], vocab),
        None,
        _phrase_graph([12, 12, 6], 5.0, vocab),
    ]
    join_at = [0, 2, 3, 5, 1]
    alone = [_stream(model, search, [u], [g])[0] for u, g in zip(utterances, graphs, strict=True)]
    together = _stream(model, search, utterances, graphs, join_at)
    assert [tokens for tokens, _ in together] == [tokens for tokens, _ in alone]
    assert [c for _, c in together] == pytest.approx([c for _, c in alone], abs=1e-5)
    # Streams without a graph: bit for bit what they get in the same batch with no boosting at all.
    unboosted = _stream(model, search, utterances, [None] * len(utterances), join_at)
    for index in (1, 3):
        assert together[index] == unboosted[index]
    assert together[0] != unboosted[0] or together[2] != unboosted[2] or together[4] != unboosted[4]


def test_a_boosted_stream_streamed_equals_its_whole_utterance_search(model: StreamingTransducer) -> None:
    vocab = model.tokenizer.vocab_size
    search = Search(SearchOptions(beam=4))
    graph = build_context_graph([Phrase((5, 9, 5), 2.0), Phrase((9, 12), 3.0)], vocab)
    for features in _features([9, 64, 157], seed=0):
        ((streamed, _),) = _stream(model, search, [features], [graph])
        whole = search_utterances(
            model, search, torch.from_numpy(features)[None], torch.tensor([features.shape[0]]), contexts=[graph]
        )
        assert list(streamed) == final_hypotheses(model, search, whole, contexts=[graph])[0]


# -- a real server ---------------------------------------------------------------------------
# Names the bundled model misspells with espeak-ng's en-us voice and spells right when boosted
# at the default boost (docs/benchmarks.md, phrase boosting).
NAMED_SENTENCES = {
    name: f"please send the report to {name} before friday"
    for name in ("tanaka", "zimmerman", "gdansk", "kubernetes", "priyanka")
}


@pytest.fixture(scope="module")
def bundled() -> Iterator[asr_pb2_grpc.RecognizerStub]:
    with ServerThread([DEFAULT_MODEL_DIR]) as server, grpc.insecure_channel(server.target) as channel:
        yield asr_pb2_grpc.RecognizerStub(channel)


def _transcript(stub: asr_pb2_grpc.RecognizerStub, text: str, contexts: list[asr_pb2.SpeechContext]) -> str:
    pcm, rate = synthesize(text)
    streaming = config(rate, interim_results=False)
    streaming.config.speech_contexts.extend(contexts)
    responses = stream(stub, streaming, fixed_chunks(pcm, 3200))
    return " ".join(r.alternatives[0].transcript for resp in responses for r in resp.results if r.is_final)


@requires_espeak
def test_boosted_names_come_out_right_and_other_speech_stays_as_it_was(bundled: asr_pb2_grpc.RecognizerStub) -> None:
    contexts = [asr_pb2.SpeechContext(phrases=list(NAMED_SENTENCES))]
    for name, sentence in NAMED_SENTENCES.items():
        plain = _transcript(bundled, sentence, [])
        assert name not in plain.split(), plain
        assert _transcript(bundled, sentence, contexts) == sentence
    other = "please call me back tomorrow morning"
    assert _transcript(bundled, other, contexts) == _transcript(bundled, other, [])


@pytest.fixture(scope="module")
def greedy(random_model_dir: Path) -> Iterator[asr_pb2_grpc.RecognizerStub]:
    with ServerThread([random_model_dir], beam_size=1) as server, grpc.insecure_channel(server.target) as channel:
        yield asr_pb2_grpc.RecognizerStub(channel)


@requires_espeak
def test_greedy_server_takes_speech_contexts(greedy: asr_pb2_grpc.RecognizerStub) -> None:
    contexts = [asr_pb2.SpeechContext(phrases=["the quick brown fox"], boost=20.0)]
    assert isinstance(_transcript(greedy, "the quick brown fox jumps over the lazy dog", contexts), str)


def test_phrases_are_read_as_the_model_writes_words() -> None:
    """Punctuation and symbols are word breaks, capitals are lowered when only that is in the model's
    alphabet; the graph knows the words (for the rescorer) and each context's bonus."""
    tokenizer = load_model(DEFAULT_MODEL_DIR).tokenizer
    recognition = asr_pb2.RecognitionConfig(
        speech_contexts=[
            asr_pb2.SpeechContext(phrases=["Dr. O'Neil-Tanaka,", "  gdansk  "]),
            asr_pb2.SpeechContext(phrases=["kubernetes"], boost=20.0),
        ]
    )
    graph = context_graph(recognition, tokenizer, "en-small")
    assert graph is not None
    assert graph.words == frozenset({"dr", "o'neil", "tanaka", "gdansk", "kubernetes"})
    deltas, _ = _scores(graph, tokenizer.encode("dr o'neil tanaka"))
    assert deltas == pytest.approx([DEFAULT_BOOST * TOKEN_BONUS_PER_BOOST] * len(deltas))
    deltas, _ = _scores(graph, tokenizer.encode("kubernetes"))
    assert deltas == pytest.approx([20.0 * TOKEN_BONUS_PER_BOOST] * len(deltas))
    assert context_graph(asr_pb2.RecognitionConfig(), tokenizer, "en-small") is None


def _many(count: int) -> list[asr_pb2.SpeechContext]:
    return [asr_pb2.SpeechContext(phrases=["the quick brown fox"] * count)]


@requires_espeak
@pytest.mark.parametrize(
    ("contexts", "fragments"),
    [
        ([asr_pb2.SpeechContext(phrases=["fox"], boost=-1.0)], ["speech_contexts[0].boost", "between 0 and 20", "-1"]),
        (
            [asr_pb2.SpeechContext(phrases=["fox"], boost=1e9)],
            ["speech_contexts[0].boost", "between 0 and 20", "1e+09"],
        ),
        ([asr_pb2.SpeechContext(phrases=["fox"], boost=float("nan"))], ["speech_contexts[0].boost", "nan"]),
        (_many(10_000), ["10000 phrases", "at most 1000"]),
        ([asr_pb2.SpeechContext(phrases=["fox", "z" * 101])], ["speech_contexts[0].phrases[1]", "at most 100"]),
        ([asr_pb2.SpeechContext(phrases=["z" * 100] * 101)], ["10100 characters", "at most 10000 in all"]),
        ([asr_pb2.SpeechContext(phrases=["fox"]), asr_pb2.SpeechContext(phrases=["  "])], ["phrases[0] is empty"]),
        (
            [asr_pb2.SpeechContext(phrases=["Zürich airport"])],
            ["speech_contexts[0].phrases[0]", "cannot write", "'ü'", "random-en"],
        ),
    ],
)
def test_bad_speech_contexts_are_invalid_argument(
    greedy: asr_pb2_grpc.RecognizerStub, contexts: list[asr_pb2.SpeechContext], fragments: list[str]
) -> None:
    with pytest.raises(grpc.RpcError) as error:
        _transcript(greedy, "the quick brown fox", contexts)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    for fragment in fragments:
        assert fragment in error.value.details()
    assert len(error.value.details().encode()) <= 1000


def test_final_text_of_boosted_streams_is_text(model: StreamingTransducer) -> None:
    """decode_streams with a context graph in StreamOptions: the offline path the benchmarks use."""
    graph = _phrase_graph([5, 9], 2.0, model.tokenizer.vocab_size)
    (updates,) = decode_streams(
        model,
        Search(SearchOptions(beam=4)),
        [_features([40], seed=2)],
        StreamOptions(context_graph=graph),
        features=True,
    )
    assert isinstance(final_text(updates), str)
