"""The batching engine without gRPC: transcripts, t-SOT, endpointing, slots, sessions, scheduler."""

from __future__ import annotations

import asyncio
import dataclasses
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from model_helpers import noisy_model
from random_model import save_random_model

from server.engine.decoder import StreamOptions, Update
from server.engine.endpoint import EndpointConfig
from server.engine.engine import Engine
from server.engine.errors import EngineError
from server.engine.session import MAX_BACKLOG_SECONDS
from server.engine.slots import SlotAllocator, SlotExhaustedError
from server.engine.transcript import Result, Utterance, utterance_results, words_of
from server.model.checkpoint import load_model
from server.model.frontend import compute_fbank
from server.search.ngram_lm import build_ngram_lm
from server.search.options import RescoringOptions, Search, SearchOptions, SearchResources
from server.search.rescoring import WordLM, build_word_lm
from server.search.utterances import final_hypotheses, search_utterances


class FakeTokenizer:
    """Pieces by id: 0 blank, 1 <cc>, then words split into SentencePiece-style pieces."""

    PIECES = ["<blk>", "<cc>", "\u2581hel", "lo", "\u2581world", "\u2581", "s"]
    blank_id = 0
    cc_id = 1

    def starts_word(self, token_id: int) -> bool:
        return self.PIECES[token_id].startswith("\u2581")

    def decode(self, ids: list[int]) -> str:
        text = "".join(self.PIECES[i] for i in ids if i > 1)
        return text.replace("\u2581", " ").strip()

    def words(self, ids: list[int]) -> list[str]:
        return self.decode(ids).split()


def test_words_group_pieces_and_take_frame_times() -> None:
    tokens = [(2, 3), (3, 4), (4, 10), (5, 12), (6, 12)]  # "▁hel lo ▁world ▁ s"
    words = words_of(tokens, FakeTokenizer(), frame_shift_ms=40)
    assert [(w.text, w.start_ms, w.end_ms) for w in words] == [
        ("hello", 120, 200),
        ("world", 400, 440),
        ("s", 480, 520),
    ]


def _results(tokens: list[tuple[int, int]], multi_talker: bool, **options: Any) -> list[Result]:
    """The results of an utterance of (token, frame) pairs in ``FakeTokenizer`` pieces at 40 ms frames;
    ``options``: the rest of ``utterance_results``'s keyword arguments."""
    utterance = Utterance(cc_id=1, multi_talker=multi_talker)
    for token, frame in tokens:
        utterance.add(token, frame)
    return utterance_results(utterance, FakeTokenizer(), frame_shift_ms=40, **options)


def test_tsot_tokens_are_deserialised_into_two_channels() -> None:
    tokens = [(2, 1), (3, 2), (1, 3), (4, 4), (1, 5), (5, 6), (6, 6)]
    results = _results(tokens, multi_talker=True, is_final=True, utterance_index=3, with_words=True, language_code="en")
    assert [(r.channel, r.transcript, r.start_ms, r.end_ms) for r in results] == [
        (0, "hello s", 40, 280),
        (1, "world", 160, 200),
    ]
    assert all(r.is_final and r.utterance_index == 3 and r.language_code == "en" for r in results)


def test_channel_change_tokens_are_dropped_without_multi_talker() -> None:
    tokens = [(2, 1), (1, 2), (4, 3)]
    results = _results(
        tokens, multi_talker=False, is_final=False, utterance_index=0, with_words=False, language_code=""
    )
    assert [(r.channel, r.transcript, r.words) for r in results] == [(0, "hel world", ())]


def test_slot_allocator_reuses_lowest_free_slot() -> None:
    slots = SlotAllocator(3)
    assert [slots.allocate() for _ in range(3)] == [0, 1, 2]
    with pytest.raises(SlotExhaustedError):
        slots.allocate()
    slots.release(1)
    assert slots.allocate() == 1


def _sine_noise(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(16000 * seconds)) / 16000
    return (0.3 * np.sin(2 * np.pi * 300 * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)


async def _run_session(engine: Engine, audio: np.ndarray, chunk: int, options: StreamOptions) -> list[Update]:
    session = engine.open_session(options)

    async def feed() -> None:
        for start in range(0, audio.size, chunk):
            session.accept_audio(audio[start : start + chunk])
            await asyncio.sleep(0)
        session.finish()

    feeder = asyncio.create_task(feed())
    try:
        updates = [update async for update in session.updates()]
        await feeder
    finally:
        feeder.cancel()
        session.close()  # as the servicer does, also when the stream failed
    return updates


def _word_lm_for_a_runner_up(model, features: np.ndarray, search: Search) -> tuple[WordLM, str]:
    """A word LM that knows only one non-best hypothesis of the whole-utterance search, so that
    rescoring with it must overrule the search's choice; returns it with that hypothesis' text."""
    update = search_utterances(model, search, torch.from_numpy(features)[None], torch.tensor([features.shape[0]]))[
        0
    ].update
    texts = [model.tokenizer.decode([t for t, _ in hypothesis]).strip() for hypothesis in update.added]
    runner_up = next(
        text
        for k, text in enumerate(texts)
        if k != update.best and update.scores[k] > -math.inf and text != texts[update.best]
    )
    return build_word_lm([runner_up] * 10, order=2, min_count=1), runner_up


def _text_of(model, search: Search, features: np.ndarray) -> tuple[str, list[tuple[int, int]]]:
    results = search_utterances(model, search, torch.from_numpy(features)[None], torch.tensor([features.shape[0]]))
    tokens = final_hypotheses(model, search, results)
    return model.tokenizer.decode([t for t, _ in tokens[0]]).strip(), tokens[0]


@pytest.mark.parametrize("method", ["greedy", "beam+lm", "beam+lm+rescoring", "beam+lm+rescoring+ctc"])
def test_engine_equals_whole_utterance_decoding(random_model_dir: Path, tmp_path: Path, method: str) -> None:
    """One stream through fbank, windows, slots and the scheduler decodes like the model offline.

    Under beam search the partials may revise earlier words; the final must still be exactly
    the whole-utterance beam search result. With CTC rescoring, the session's CTC frames,
    gathered chunk by chunk, must choose as the whole utterance's do.
    """
    with_ctc = method.endswith("+ctc")
    model = noisy_model(save_random_model(tmp_path / "ctc", ctc_head=True) if with_ctc else random_model_dir)
    search = Search()
    if method.startswith("beam+lm"):
        rng = np.random.default_rng(5)
        vocab = model.tokenizer.vocab_size
        lm = build_ngram_lm([rng.integers(1, vocab, size=8).tolist() for _ in range(200)], vocab, order=3)
        search = Search(SearchOptions(beam=4, lm_weight=0.5, token_bonus=0.5), SearchResources(token_lm=lm))
    audio = _sine_noise(2.3, seed=0)
    features = compute_fbank(audio, 16000, model.config.features)
    search_best, _ = _text_of(model, search, features)
    if method == "beam+lm+rescoring":
        word_lm, runner_up = _word_lm_for_a_runner_up(model, features, search)
        search = Search(
            dataclasses.replace(search.options, rescoring=RescoringOptions(weight=5.0, oov_penalty=20.0)),
            dataclasses.replace(search.resources, word_lm=word_lm),
        )
    if with_ctc:
        # A word LM that knows nothing of these texts (weight 0): only the CTC head can overrule the search.
        search = Search(
            dataclasses.replace(search.options, rescoring=RescoringOptions(weight=0.0, ctc_weight=1.0)),
            dataclasses.replace(search.resources, word_lm=build_word_lm(["a b c"] * 3, order=2, min_count=1)),
        )
    expected, offline = _text_of(model, search, features)
    assert offline, "the noisy random model should emit tokens"
    if method == "beam+lm+rescoring":
        assert expected == runner_up  # the rescorer, not the search score, chose the final
    if with_ctc:
        assert expected != search_best  # the CTC head, not the search score, chose the final
    no_endpoints = StreamOptions(endpoint=EndpointConfig(60_000, 60_000, 60_000))

    async def run() -> list[Update]:
        engine = Engine(model, "cpu", capacity=4, max_batch_size=4, max_wait_s=0.001, search=search)
        await engine.start()
        try:
            return await _run_session(engine, audio, 1234, no_endpoints)
        finally:
            await engine.stop()

    updates = asyncio.run(run())
    final = [r for u in updates for r in u.results if r.is_final]
    assert len(final) == 1 and final[0].transcript == expected
    assert updates[-1].audio_processed_ms == pytest.approx(audio.size / 16, abs=80)


def test_scheduler_batches_streams_and_frees_slots(random_model_dir: Path) -> None:
    model = load_model(random_model_dir)
    options = StreamOptions(endpoint=EndpointConfig(max_utterance_ms=600))

    async def run() -> tuple[list[list[Update]], list[list[Update]], int, int]:
        engine = Engine(model, "cpu", capacity=8, max_batch_size=8, max_wait_s=0.05)
        await engine.start()
        try:
            audios = [_sine_noise(1.0 + 0.3 * i, seed=i) for i in range(5)]
            alone = [await _run_session(engine, a, 800, options) for a in audios]
            together = await asyncio.gather(*(_run_session(engine, a, 3000, options) for a in audios))
            return alone, list(together), engine.scheduler.max_batch_seen, engine.free_slots
        finally:
            await engine.stop()

    alone, together, max_batch, free = asyncio.run(run())
    assert together == alone
    assert max_batch > 1
    assert free == 8


def test_backlog_pauses_reading_until_the_model_catches_up(random_model_dir: Path) -> None:
    model = load_model(random_model_dir)

    async def run() -> tuple[bool, bool]:
        engine = Engine(model, "cpu", capacity=2, max_batch_size=2, max_wait_s=0.001)
        session = engine.open_session(StreamOptions())  # scheduler not started: nothing is consumed
        session.accept_audio(_sine_noise(MAX_BACKLOG_SECONDS + 1, seed=0))
        waiter = asyncio.create_task(session.wait_for_capacity())
        await asyncio.sleep(0.01)
        blocked = not waiter.done()
        await engine.start(warmup=False)
        await asyncio.wait_for(waiter, 30)
        session.close()
        await engine.stop()
        return blocked, waiter.done()

    assert asyncio.run(run()) == (True, True)


def test_a_failing_model_step_fails_its_streams_but_not_the_engine(random_model_dir: Path) -> None:
    model = load_model(random_model_dir)

    async def run() -> tuple[str, list[Update]]:
        engine = Engine(model, "cpu", capacity=2, max_batch_size=2, max_wait_s=0.001)
        await engine.start(warmup=False)
        real_step = model.encode_chunk

        def broken_step(*args, **kwargs):
            raise RuntimeError("device lost")

        model.encode_chunk = broken_step  # type: ignore[method-assign]
        try:
            await _run_session(engine, _sine_noise(0.5, seed=1), 1600, StreamOptions())
        except EngineError as error:
            message = str(error)
        else:
            message = ""
        finally:
            model.encode_chunk = real_step  # type: ignore[method-assign]
        updates = await _run_session(engine, _sine_noise(0.5, seed=1), 1600, StreamOptions())
        await engine.stop()
        assert engine.free_slots == 2
        return message, updates

    message, updates = asyncio.run(run())
    # The client hears what failed, not the exception's text (the log has that).
    assert "model step of this stream failed (RuntimeError)" in message
    assert updates and updates[-1].audio_processed_ms > 0
