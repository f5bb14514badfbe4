"""Conformer-Transducer: encoder + stateless prediction network + joint network (+ CTC head).

The model holds the networks and their streaming state; searching over its outputs is
``server.search``'s job. ``encode_chunk`` is the model's whole per-chunk work in the server.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from server.model.config import ModelConfig
from server.model.encoder import ConformerEncoder
from server.model.frames import encoder_frame_ms
from server.model.state import EncoderState
from server.model.tokenizer import Tokenizer


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


class StreamingTransducer(nn.Module):
    """The model the server runs; see docs/architecture.md for how the engine uses it."""

    token_languages: Tensor | None  # a registered buffer (V, K) bool, or None for one language

    def __init__(self, config: ModelConfig, tokenizer: Tokenizer) -> None:
        super().__init__()
        if tokenizer.vocab_size != config.tokenizer.vocab_size:
            raise ValueError(
                f"tokenizer has {tokenizer.vocab_size} pieces, config.json says {config.tokenizer.vocab_size}"
            )
        self.config = config
        self.tokenizer = tokenizer
        vocab = config.tokenizer.vocab_size
        self.encoder = ConformerEncoder(config.encoder, config.features, len(config.languages))
        self.decoder = StatelessDecoder(
            vocab, config.decoder.embed_dim, config.decoder.context_size, tokenizer.blank_id
        )
        self.joiner = Joiner(config.encoder.d_model, config.decoder.embed_dim, config.joiner_dim, vocab)
        # Only to rescore final results (``search.ctc_scores``); the search never uses it.
        self.ctc_head = nn.Linear(config.encoder.d_model, vocab) if config.ctc_head else None
        # CMM: which languages' text uses each token (V, K); a stream may emit the tokens of its
        # selected languages only. A one-language model has no table: every token is allowed.
        table = torch.ones(vocab, len(config.languages), dtype=torch.bool) if len(config.languages) > 1 else None
        self.register_buffer("token_languages", table)

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
        return encoder_frame_ms(self.config.features)

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

    # -- languages (CMM) -----------------------------------------------------------------------
    def allowed_tokens(self, language_weights: Tensor) -> Tensor | None:
        """language_weights (B, K) -> (B, V) bool, the tokens a stream may emit (blank always);
        None when every token is allowed (a one-language model)."""
        if self.token_languages is None:
            return None
        selected = (language_weights > 0).to(torch.float32)
        allowed = (selected @ self.token_languages.T.to(torch.float32)) > 0
        allowed[:, self.tokenizer.blank_id] = True
        return allowed

    def utterance_language(self, token_ids: list[int], language_weights: Tensor) -> int:
        """Index of the selected language (weights (K,)) the tokens belong to most: the one whose
        text uses the most of them (ties: the first such language)."""
        if self.token_languages is None or not token_ids:
            return int(torch.argmax(language_weights))
        counts = self.token_languages[torch.tensor(token_ids)].sum(dim=0).to(torch.float32)
        return int(torch.argmax(torch.where(language_weights > 0, counts, torch.full_like(counts, -1.0))))

    # -- streaming ---------------------------------------------------------------------------
    def init_encoder_state(self, batch: int, language_weights: Tensor | None = None) -> EncoderState:
        """Fresh encoder state for ``batch`` streams; language_weights (B, num_languages) or None = all."""
        device = self.encoder.feature_mean.device
        if language_weights is None:
            language_weights = torch.ones(batch, len(self.config.languages), device=device)
        language_weights = language_weights / language_weights.sum(dim=1, keepdim=True)
        return EncoderState(language_weights=language_weights, **self.encoder.init_caches(batch, device))

    def encode_chunk(
        self, features: Tensor, num_feature_frames: Tensor, state: EncoderState
    ) -> tuple[Tensor, Tensor, EncoderState]:
        """One chunk of B streams: features (B, feature_window, F), num_feature_frames (B,) real frames.

        Returns encoder frames (B, C, D), valid frames per stream (B,) (C except at a final
        flush) and the new state.
        """
        encoder_out, num_frames, keys, values, conv = self.encoder.step(
            features,
            num_feature_frames,
            state.attn_keys,
            state.attn_values,
            state.conv_cache,
            state.chunks_done,
            state.language_weights,
        )
        new_state = EncoderState(
            attn_keys=keys,
            attn_values=values,
            conv_cache=conv,
            chunks_done=state.chunks_done + 1,
            language_weights=state.language_weights,
        )
        return encoder_out, num_frames, new_state

    def chunk_frame_offset(self, state: EncoderState) -> Tensor:
        """(B,) absolute index of the first encoder frame the next chunk produces."""
        return state.chunks_done * self.config.encoder.chunk_size

    def encode_utterances(
        self, features: Tensor, feature_lengths: Tensor, streaming: bool, language_weights: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Encoder over whole utterances (B, T, F), lengths (B,): the streaming mask (all left context,
        which computes what chunk-by-chunk encoding computes) or full context. -> (B, T', D), (B,).

        language_weights (B, K): each utterance's language mask, normalised here (None: all languages).
        """
        if language_weights is not None:
            language_weights = language_weights / language_weights.sum(dim=1, keepdim=True)
        return self.encoder(
            features,
            feature_lengths,
            chunk_size=-1 if streaming else None,
            left_chunks=-1 if streaming else None,
            language_weights=language_weights,
        )
