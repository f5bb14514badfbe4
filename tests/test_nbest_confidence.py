"""N-best alternatives, confidence, word confidence and stability (decision 0020).

End to end against real servers on loopback (the bundled model for results that mean
something, the random-init model for structure and greedy search), the N-best grouping on
hand-made hypotheses, batched streams equal to each stream alone, and the INVALID_ARGUMENT
cases.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from asr_client.api.asr.v1 import asr_pb2, asr_pb2_grpc
from asr_harness import ServerThread, config, fixed_chunks, requires_espeak, stream, synthesize

from server.engine.decoder import StreamOptions
from server.engine.endpoint import EndpointConfig
from server.engine.nbest import NbestOptions, final_results
from server.engine.offline import decode_streams
from server.engine.transcript import Utterance, utterance_results
from server.model.checkpoint import DEFAULT_MODEL_DIR, load_model
from server.model.transducer import StreamingTransducer
from server.search.options import Search, SearchOptions

pytestmark = requires_espeak

SENTENCE = "please call me back tomorrow morning about the blue car"


@pytest.fixture(scope="module")
def bundled() -> Iterator[asr_pb2_grpc.RecognizerStub]:
    with ServerThread([DEFAULT_MODEL_DIR]) as server, grpc.insecure_channel(server.target) as channel:
        yield asr_pb2_grpc.RecognizerStub(channel)


@pytest.fixture(scope="module")
def greedy(random_model_dir: Path) -> Iterator[asr_pb2_grpc.RecognizerStub]:
    with ServerThread([random_model_dir], beam_size=1) as server, grpc.insecure_channel(server.target) as channel:
        yield asr_pb2_grpc.RecognizerStub(channel)


def _final_results(responses: list[asr_pb2.StreamingRecognizeResponse]) -> list[asr_pb2.StreamingRecognitionResult]:
    return [result for response in responses for result in response.results if result.is_final]


def test_finals_carry_distinct_alternatives_best_first_with_confidences(
    bundled: asr_pb2_grpc.RecognizerStub,
) -> None:
    pcm, rate = synthesize(SENTENCE)
    fields = {"enable_word_time_offsets": True, "interim_results": False}
    one = _final_results(stream(bundled, config(rate, **fields), fixed_chunks(pcm, 3200)))
    many = _final_results(
        stream(
            bundled, config(rate, max_alternatives=5, enable_word_confidence=True, **fields), fixed_chunks(pcm, 3200)
        )
    )
    assert [r.alternatives[0].transcript for r in many] == [r.alternatives[0].transcript for r in one]
    assert all(len(r.alternatives) == 1 for r in one)
    assert any(len(r.alternatives) > 1 for r in many)
    for result in many:
        transcripts = [a.transcript for a in result.alternatives]
        assert 1 <= len(transcripts) <= 5 and len(set(transcripts)) == len(transcripts) and all(transcripts)
        confidences = [a.confidence for a in result.alternatives]
        assert all(0.0 < c <= 1.0 for c in confidences)
        # Distinct transcripts hold disjoint shares of the beam's probability.
        assert sum(confidences) <= 1.0 + 1e-5
        for alternative in result.alternatives:
            assert alternative.words and all(0.0 < w.confidence <= 1.0 for w in alternative.words)
            assert " ".join(w.word for w in alternative.words) == alternative.transcript
        assert result.stability == 0.0
    # Word confidence only when asked for; the transcript's confidence always on finals.
    assert all(w.confidence == 0.0 for r in one for w in r.alternatives[0].words)
    assert all(0.0 < r.alternatives[0].confidence <= 1.0 for r in one)


def test_interim_results_carry_stability_and_no_confidence(bundled: asr_pb2_grpc.RecognizerStub) -> None:
    pcm, rate = synthesize(SENTENCE)
    responses = stream(bundled, config(rate, interim_results=True), fixed_chunks(pcm, 3200))
    partials = [r for response in responses for r in response.results if not r.is_final]
    assert partials
    assert all(0.0 <= r.stability <= 1.0 and r.alternatives[0].confidence == 0.0 for r in partials)
    assert any(r.stability > 0.0 for r in partials)
    assert all(len(r.alternatives) == 1 for r in partials)


def test_recognize_returns_alternatives_too(bundled: asr_pb2_grpc.RecognizerStub) -> None:
    pcm, rate = synthesize(SENTENCE)
    recognition = config(rate, max_alternatives=3).config
    response = bundled.Recognize(asr_pb2.RecognizeRequest(config=recognition, audio_content=pcm), timeout=60)
    assert response.results and all(1 <= len(r.alternatives) <= 3 for r in response.results)
    assert any(len(r.alternatives) > 1 for r in response.results)


def test_greedy_search_has_one_alternative_of_confidence_one(greedy: asr_pb2_grpc.RecognizerStub) -> None:
    pcm, rate = synthesize("please call me back tomorrow morning")
    streaming = config(rate, max_alternatives=10, enable_word_time_offsets=True, enable_word_confidence=True)
    results = _final_results(stream(greedy, streaming, fixed_chunks(pcm, 3200)))
    assert results
    for result in results:
        assert len(result.alternatives) == 1
        assert result.alternatives[0].confidence == 1.0
        assert all(w.confidence == 1.0 for w in result.alternatives[0].words)


@pytest.mark.parametrize("count", [11, -1, 1000])
def test_max_alternatives_out_of_range_is_invalid_argument(greedy: asr_pb2_grpc.RecognizerStub, count: int) -> None:
    pcm, rate = synthesize("please call me back tomorrow morning")
    with pytest.raises(grpc.RpcError) as error:
        stream(greedy, config(rate, max_alternatives=count), fixed_chunks(pcm, 3200))
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "max_alternatives must be between 0 and 10" in error.value.details()
    assert f"got {count}" in error.value.details()


# -- the N-best grouping on hand-made hypotheses -------------------------------------------------
def test_alternatives_are_distinct_texts_with_summed_probability(random_model_dir: Path) -> None:
    """Hypotheses that read the same are one alternative holding their summed probability; a word's
    confidence is the probability of the hypotheses with that word at an overlapping time."""
    tokenizer = load_model(random_model_dir).tokenizer

    def hypothesis(pieces: list[list[int]], start: int = 0) -> list[tuple[int, int]]:
        # One word per list of token ids, each word 5 frames after the previous one.
        return [(token, start + 5 * w + i) for w, word in enumerate(pieces) for i, token in enumerate(word)]

    the, fox, dog = tokenizer.encode("the"), tokenizer.encode("fox"), tokenizer.encode("dog")
    ranked = [
        (hypothesis([the, fox]), -1.0),
        (hypothesis([the, dog]), -2.0),
        (hypothesis([the, fox]), -2.5),  # the same tokens again: a merged duplicate in a real beam
        (hypothesis([dog, fox], start=40), -3.0),  # "dog fox", later: shares no timed word with "the fox"
    ]
    best = Utterance.of(ranked[0][0], tokenizer.cc_id, multi_talker=False)
    results = utterance_results(
        best, tokenizer, is_final=True, utterance_index=0, frame_shift_ms=40, with_words=True, language_code=""
    )
    options = NbestOptions(max_alternatives=10, word_confidence=True, word_times=True)
    (result,) = final_results(results, ranked, tokenizer, options, frame_shift_ms=40, multi_talker=False, scale=1.0)
    weights = np.exp([-1.0, -2.0, -2.5, -3.0])
    p = weights / weights.sum()
    assert result.transcript == "the fox"
    assert result.confidence == pytest.approx(p[0] + p[2])
    assert [a.transcript for a in result.alternatives] == ["the dog", "dog fox"]
    assert [a.confidence for a in result.alternatives] == pytest.approx([p[1], p[3]])
    the_word, fox_word = result.words
    assert the_word.confidence == pytest.approx(p[0] + p[1] + p[2])
    assert fox_word.confidence == pytest.approx(p[0] + p[2])
    limited = NbestOptions(max_alternatives=2, word_confidence=False, word_times=False)
    (short,) = final_results(results, ranked, tokenizer, limited, frame_shift_ms=40, multi_talker=False)
    assert [a.transcript for a in short.alternatives] == ["the dog"] and short.alternatives[0].words == ()


# -- batching --------------------------------------------------------------------------------------
def _decode(model: StreamingTransducer, utterances: list[np.ndarray], options: list[StreamOptions], join_at=None):
    pieces = [[u[s : s + 17] for s in range(0, len(u), 17)] for u in utterances]
    search = Search(SearchOptions(beam=4))
    updates = decode_streams(model, search, pieces, options, join_at=join_at, features=True)
    return [[r for u in stream_updates for r in u.results] for stream_updates in updates]


def test_streams_with_mixed_nbest_options_in_one_batch_get_what_they_get_alone(model: StreamingTransducer) -> None:
    rng = np.random.default_rng(5)
    utterances = [rng.standard_normal((n, 80)).astype(np.float32) for n in (157, 60, 111, 23)]
    endpoint = EndpointConfig(trailing_silence_ms=400, max_utterance_ms=1200)
    options = [
        StreamOptions(max_alternatives=5, word_times=True, word_confidence=True, endpoint=endpoint),
        StreamOptions(endpoint=endpoint),
        StreamOptions(max_alternatives=3, interim_results=False, endpoint=endpoint),
        StreamOptions(max_alternatives=10, word_times=True, endpoint=endpoint),
    ]
    alone = [_decode(model, [u], [o])[0] for u, o in zip(utterances, options, strict=True)]
    together = _decode(model, utterances, options, join_at=[0, 2, 3, 5])
    for a, b in zip(alone, together, strict=True):
        assert [(r.transcript, r.tokens, [x.transcript for x in r.alternatives]) for r in a] == [
            (r.transcript, r.tokens, [x.transcript for x in r.alternatives]) for r in b
        ]
        assert [r.confidence for r in a] == pytest.approx([r.confidence for r in b], abs=1e-5)
        assert [r.stability for r in a] == pytest.approx([r.stability for r in b], abs=1e-5)
    finals = [r for results in together for r in results if r.is_final]
    assert any(r.alternatives for r in finals)
    assert all(len(r.alternatives) <= 4 for r in together[0] if r.is_final)
