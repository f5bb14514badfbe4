"""Conformer-Transducer: encoder + stateless prediction network + joint network.

``StreamingTransducer.step`` is the whole per-chunk work of the server: one batched encoder
step and one batched greedy decoding pass over the chunk's frames.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from server.model.config import ModelConfig
from server.model.encoder import ConformerEncoder
from server.model.state import StreamState
from server.model.tokenizer import Tokenizer
from server.search.beam import (
    BeamState,
    BeamTrace,
    BeamUpdate,
    SearchConfig,
    beam_search_frames,
    beam_updates,
    init_beam_state,
)
from server.search.rescoring import final_hypothesis


class StatelessDecoder(nn.Module):
    """Prediction network over the last ``context_size`` tokens (embedding + grouped conv).

    A stateless predictor (Ghodsi et al. 2020) keeps the decoder state a tiny token tensor,
    which the batching engine gathers and scatters for free.
    """

    def __init__(self, vocab_size: int, embed_dim: int, context_size: int, blank_id: int) -> None:
        super().__init__()
        self.context_size = context_size
        self.blank_id = blank_id
        self.embedding = nn.Embedding(vocab_size, embed_dim)
        self.context_conv = nn.Conv1d(embed_dim, embed_dim, context_size, groups=embed_dim // 4, bias=False)

    def forward(self, tokens: Tensor) -> Tensor:
        """tokens (B, U + context_size - 1) -> (B, U, E): output u summarises tokens u .. u + ctx - 1."""
        x = self.embedding(tokens).transpose(1, 2)
        return F.relu(self.context_conv(x).transpose(1, 2))

    def training_input(self, targets: Tensor) -> Tensor:
        """targets (B, U) -> decoder outputs (B, U + 1, E) for the RNN-T lattice rows."""
        pad = targets.new_full((targets.shape[0], self.context_size), self.blank_id)
        return self.forward(torch.cat([pad, targets], dim=1))


class Joiner(nn.Module):
    """logits = W tanh(enc_proj(e) + dec_proj(d)), broadcasting over leading dims."""

    def __init__(self, encoder_dim: int, decoder_dim: int, joiner_dim: int, vocab_size: int) -> None:
        super().__init__()
        self.encoder_proj = nn.Linear(encoder_dim, joiner_dim)
        self.decoder_proj = nn.Linear(decoder_dim, joiner_dim)
        self.output = nn.Linear(joiner_dim, vocab_size)

    def forward(self, encoder_out: Tensor, decoder_out: Tensor) -> Tensor:
        return self.output(torch.tanh(self.encoder_proj(encoder_out) + self.decoder_proj(decoder_out)))


@dataclass
class StepOutput:
    """Result of one streaming step for B streams.

    tokens: per stream, (token_id, absolute encoder frame) pairs greedy search emitted in this
        chunk; None under beam search.
    num_frames: (B,) encoder frames this step produced per stream.
    state: the streams' new state.
    trace: under beam search, what the chunk added to each stream's K hypotheses (the best
        one is the highest of ``state.beam_scores``; ``beam_search.beam_updates`` has both).
    ctc_log_probs: (B, T, V) the CTC head's log-probabilities of the chunk's encoder frames
        (row b valid up to ``num_frames[b]``), when the search's rescorer uses them; else None.
    """

    tokens: list[list[tuple[int, int]]] | None
    num_frames: Tensor
    state: StreamState
    trace: BeamTrace | None = None
    ctc_log_probs: Tensor | None = None


@dataclass
class UtteranceHypotheses:
    """A whole utterance's beam search result: the K final hypotheses (``update.added``, from
    empty) with their search scores, and the CTC head's log-probabilities (T, V) of its
    encoder frames when they were asked for."""

    update: BeamUpdate
    ctc_log_probs: Tensor | None = None


def state_beam(state: StreamState) -> BeamState:
    """The beam search part of a stream state."""
    return BeamState(
        decoder_context=state.beam_decoder_context,
        lm_context=state.beam_lm_context,
        scores=state.beam_scores,
        hashes=state.beam_hashes,
    )


class StreamingTransducer(nn.Module):
    """The model the server runs; see docs/architecture.md for how the engine uses it."""

    def __init__(self, config: ModelConfig, tokenizer: Tokenizer) -> None:
        super().__init__()
        if tokenizer.vocab_size != config.tokenizer.vocab_size:
            raise ValueError(
                f"tokenizer has {tokenizer.vocab_size} pieces, config.json says {config.tokenizer.vocab_size}"
            )
        self.config = config
        self.tokenizer = tokenizer
        vocab = config.tokenizer.vocab_size
        self.encoder = ConformerEncoder(config.encoder, config.features)
        self.decoder = StatelessDecoder(
            vocab, config.decoder.embed_dim, config.decoder.context_size, tokenizer.blank_id
        )
        self.joiner = Joiner(config.encoder.d_model, config.decoder.embed_dim, config.joiner_dim, vocab)
        # Only to rescore final results (``rescoring.ctc_sequence_log_probs``); the search never uses it.
        self.ctc_head = nn.Linear(config.encoder.d_model, vocab) if config.ctc_head else None
        # The search the checkpoint's config.json asks for (``load_model`` sets it, LM included).
        self.default_search = SearchConfig()

    # -- facts the engine and ListModels need ------------------------------------------------
    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    @property
    def feature_window(self) -> int:
        return self.encoder.feature_window

    @property
    def feature_shift(self) -> int:
        return self.encoder.feature_shift

    @property
    def frame_shift_ms(self) -> int:
        return int(self.config.features.frame_shift_ms * 4)

    @property
    def latency_ms(self) -> int:
        """Algorithmic latency: chunk plus lookahead."""
        enc = self.config.encoder
        return (enc.chunk_size + enc.right_context) * self.frame_shift_ms

    def ctc_log_probs(self, encoder_out: Tensor) -> Tensor:
        """encoder_out (B, T, D) -> the CTC head's log-probabilities (B, T, V), float32."""
        if self.ctc_head is None:
            raise ValueError(f"model {self.config.name} has no CTC head (config.json ctc_head)")
        return self.ctc_head(encoder_out).float().log_softmax(dim=-1)

    def wants_ctc(self, search: SearchConfig) -> bool:
        """Whether final results under ``search`` are rescored with the CTC head."""
        return self.ctc_head is not None and search.rescorer is not None and search.rescorer.uses_ctc

    # -- streaming ---------------------------------------------------------------------------
    def init_state(
        self, batch: int, language_weights: Tensor | None = None, search: SearchConfig | None = None
    ) -> StreamState:
        """Fresh state for ``batch`` streams; language_weights (B, num_languages) or None = all.

        ``search`` (default: ``default_search``) sizes the beam part of the state.
        """
        search = search or self.default_search
        device = self.encoder.feature_mean.device
        if language_weights is None:
            language_weights = torch.ones(batch, len(self.config.languages), device=device)
        language_weights = language_weights / language_weights.sum(dim=1, keepdim=True)
        context = torch.full(
            (batch, self.config.decoder.context_size), self.tokenizer.blank_id, dtype=torch.int64, device=device
        )
        beam = init_beam_state(batch, search, self.config.decoder.context_size, self.tokenizer.blank_id, device)
        return StreamState(
            decoder_context=context,
            language_weights=language_weights,
            beam_decoder_context=beam.decoder_context,
            beam_lm_context=beam.lm_context,
            beam_scores=beam.scores,
            beam_hashes=beam.hashes,
            **self.encoder.init_caches(batch, device),
        )

    def reset_decoder(self, state: StreamState, rows: Tensor) -> None:
        """Start a new utterance for ``rows`` (N,): decoder context and beams back to the start, in place."""
        state.decoder_context[rows] = self.tokenizer.blank_id
        # Fresh beams of the pool's shape: K hypotheses, the LM context size it was made with.
        shape_of = SearchConfig(beam=state.beam_scores.shape[1])
        fresh = init_beam_state(
            rows.numel(), shape_of, self.config.decoder.context_size, self.tokenizer.blank_id, state.beam_scores.device
        )
        state.beam_decoder_context[rows] = fresh.decoder_context
        state.beam_lm_context[rows] = self.tokenizer.blank_id
        state.beam_scores[rows] = fresh.scores
        state.beam_hashes[rows] = fresh.hashes

    @torch.inference_mode()
    def step(
        self, features: Tensor, num_feature_frames: Tensor, state: StreamState, search: SearchConfig | None = None
    ) -> StepOutput:
        """One chunk for B streams: features (B, feature_window, F), num_feature_frames (B,).

        ``search`` (default: ``default_search``) must be the one the state was made with.
        """
        search = search or self.default_search
        encoder_out, num_frames, keys, values, conv = self.encoder.step(
            features, num_feature_frames, state.attn_keys, state.attn_values, state.conv_cache, state.chunks_done
        )
        frame_offset = state.chunks_done * self.config.encoder.chunk_size
        tokens, trace = None, None
        context, beam = state.decoder_context, state_beam(state)
        if search.beam > 1:
            beam, trace = beam_search_frames(self, encoder_out, num_frames, beam, search, frame_offset)
        else:
            tokens, context = self.greedy_decode(encoder_out, num_frames, state.decoder_context, frame_offset)
        new_state = StreamState(
            attn_keys=keys,
            attn_values=values,
            conv_cache=conv,
            chunks_done=state.chunks_done + 1,
            decoder_context=context,
            language_weights=state.language_weights,
            beam_decoder_context=beam.decoder_context,
            beam_lm_context=beam.lm_context,
            beam_scores=beam.scores,
            beam_hashes=beam.hashes,
        )
        ctc_log_probs = self.ctc_log_probs(encoder_out) if self.wants_ctc(search) else None
        return StepOutput(
            tokens=tokens, num_frames=num_frames, state=new_state, trace=trace, ctc_log_probs=ctc_log_probs
        )

    def greedy_decode(
        self, encoder_out: Tensor, num_frames: Tensor, context: Tensor, frame_offset: Tensor | None = None
    ) -> tuple[list[list[tuple[int, int]]], Tensor]:
        """Batched greedy transducer search.

        encoder_out (B, T, D), num_frames (B,), context (B, context_size) last tokens,
        frame_offset (B,) absolute index of frame 0 (for timestamps). At each frame, emit
        the argmax symbol while it is not blank, at most ``max_symbols_per_frame`` times.
        Returns per-stream (token, frame) lists and the new context.
        """
        batch, num_steps, _ = encoder_out.shape
        if frame_offset is None:
            frame_offset = torch.zeros(batch, dtype=torch.int64, device=encoder_out.device)
        blank = self.tokenizer.blank_id
        encoder_proj = self.joiner.encoder_proj(encoder_out)  # (B, T, J)
        decoder_proj = self.joiner.decoder_proj(self.decoder(context)[:, 0])  # (B, J)
        emitted: list[list[tuple[int, int]]] = [[] for _ in range(batch)]
        context = context.clone()
        for t in range(num_steps):
            active = t < num_frames
            if not bool(active.any()):
                break
            for _ in range(self.config.max_symbols_per_frame):
                logits = self.joiner.output(torch.tanh(encoder_proj[:, t] + decoder_proj))
                best = logits.argmax(dim=-1)
                emit = active & (best != blank)
                if not bool(emit.any()):
                    break
                rows = emit.nonzero(as_tuple=True)[0]
                context[rows] = torch.cat([context[rows, 1:], best[rows, None]], dim=1)
                decoder_proj[rows] = self.joiner.decoder_proj(self.decoder(context[rows])[:, 0])
                for row, token in zip(rows.tolist(), best[rows].tolist(), strict=True):
                    emitted[row].append((token, int(frame_offset[row]) + t))
                active = emit
        return emitted, context

    # -- whole utterances (training, offline evaluation) -------------------------------------
    def transcribe_batch(
        self, features: Tensor, feature_lengths: Tensor, streaming: bool = True, search: SearchConfig | None = None
    ) -> list[list[tuple[int, int]]]:
        """Decode whole utterances with the streaming mask (default) or full context.

        features (B, T, F), feature_lengths (B,). ``search`` (default: ``default_search``) with
        beam 1: greedy search; otherwise modified beam search with its LM fusion, and the
        word-LM rescoring of the final hypotheses when the search has a rescorer.
        """
        search = search or self.default_search
        if search.beam > 1:
            chosen = []
            for result in self.beam_hypotheses(
                features, feature_lengths, streaming, search, with_ctc=self.wants_ctc(search)
            ):
                update = result.update
                index = final_hypothesis(
                    update.added,
                    update.scores,
                    search.rescorer,
                    self.tokenizer.decode,
                    result.ctc_log_probs,
                    self.tokenizer.blank_id,
                )
                chosen.append(update.added[index])
            return chosen
        encoder_out, lengths = self._encode_utterances(features, feature_lengths, streaming)
        context = torch.full(
            (features.shape[0], self.config.decoder.context_size),
            self.tokenizer.blank_id,
            dtype=torch.int64,
            device=features.device,
        )
        tokens, _ = self.greedy_decode(encoder_out, lengths, context)
        return tokens

    def beam_hypotheses(
        self, features: Tensor, feature_lengths: Tensor, streaming: bool, search: SearchConfig, with_ctc: bool = False
    ) -> list[UtteranceHypotheses]:
        """Whole-utterance beam search (``search.beam`` > 1): per utterance all K final hypotheses,
        their scores and the search's ``best``, before any rescoring; with ``with_ctc`` also the
        CTC head's log-probabilities of its frames (on the CPU).

        features (B, T, F), feature_lengths (B,).
        """
        encoder_out, lengths = self._encode_utterances(features, feature_lengths, streaming)
        state = init_beam_state(
            features.shape[0], search, self.config.decoder.context_size, self.tokenizer.blank_id, features.device
        )
        state, trace = beam_search_frames(self, encoder_out, lengths, state, search)
        updates = beam_updates(trace, state.scores)
        if not with_ctc:
            return [UtteranceHypotheses(update) for update in updates]
        log_probs = self.ctc_log_probs(encoder_out).cpu()
        return [
            UtteranceHypotheses(update, log_probs[row, : int(length)])
            for row, (update, length) in enumerate(zip(updates, lengths.tolist(), strict=True))
        ]

    def _encode_utterances(self, features: Tensor, feature_lengths: Tensor, streaming: bool) -> tuple[Tensor, Tensor]:
        """Encoder over whole utterances: the streaming mask (all left context) or full context."""
        return self.encoder(
            features, feature_lengths, chunk_size=-1 if streaming else None, left_chunks=-1 if streaming else None
        )
