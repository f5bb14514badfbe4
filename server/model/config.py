"""Model configuration (``config.json`` of a checkpoint), validated with pydantic."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

FORMAT_VERSION = 1


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FeatureConfig(_Strict):
    """Log-mel filterbank front end, computed by kaldi-native-fbank.

    ``kind`` "kaldi": Kaldi-compatible fbank (natural log). "whisper": Whisper's 80-bin log-mel
    (Slaney mel filters, log10), scaled as Whisper does, (max(x, floor) + 4) / 4, where Whisper's
    per-30-s-window floor (its maximum - 8) is the fixed ``whisper_log10_floor``, which a
    stream can compute frame by frame.
    """

    kind: Literal["kaldi", "whisper"] = "kaldi"
    sample_rate: int = 16000
    num_mel_bins: int = 80
    frame_length_ms: float = 25.0
    frame_shift_ms: float = 10.0
    whisper_log10_floor: float = -7.0


class EncoderConfig(_Strict):
    """Conformer encoder and its streaming attention mask.

    Streaming is defined on encoder frames (after 4x subsampling, 40 ms each): a frame sees
    its own chunk of ``chunk_size`` frames and ``left_chunks`` previous chunks; the first
    layer also sees ``right_context`` frames of the next chunk (see docs/decisions).
    """

    d_model: int = 144
    num_layers: int = 10
    num_heads: int = 4
    ffn_dim: int = 576
    conv_kernel: int = 15
    subsampling_channels: int = 64
    max_relative_distance: int = 64
    dropout: float = 0.1
    chunk_size: int = Field(8, ge=1)
    left_chunks: int = Field(8, ge=1)
    right_context: int = Field(2, ge=0)
    # CMM: one low-rank linear expert per language after every block, mixed by each stream's language mask.
    language_experts: bool = False
    language_expert_rank: int = Field(64, ge=1)
    # "conv2d": two stride-2 2-D convolutions over the fbank (trained from scratch); "whisper":
    # Whisper's 1-D convolution stem (conv1, conv2 at stride 2, GELU) plus a stride-2 pair
    # pooling, so a pretrained Whisper encoder's stem carries over (training/whisper).
    frontend: Literal["conv2d", "whisper"] = "conv2d"
    activation: Literal["swish", "gelu"] = "swish"
    # Hidden size of each block's first (macaron) half-step FFN; None: ffn_dim. A Whisper-initialised
    # encoder has Whisper's FFN as the second one and a small new first one, to stay in the FLOP budget.
    macaron_ffn_dim: int | None = None
    # Length of a table of absolute position embeddings added to the stem output, indexed by the
    # encoder frame's index in the stream modulo the length; 0: none. A Whisper-initialised encoder
    # keeps Whisper's sinusoids (pooled to 25 Hz: 750 frames, 30 s): its frozen blocks lose most of
    # what they know without them (decision 0018).
    absolute_positions: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _check(self) -> EncoderConfig:
        if self.d_model % self.num_heads:
            raise ValueError(f"d_model {self.d_model} is not divisible by num_heads {self.num_heads}")
        if self.conv_kernel < 2:
            raise ValueError("conv_kernel must be at least 2")
        if self.right_context > self.chunk_size:
            raise ValueError("right_context may not exceed chunk_size")
        return self


class DecoderConfig(_Strict):
    """Stateless prediction network: embeddings of the last ``context_size`` tokens."""

    embed_dim: int = 256
    context_size: int = 2


class TokenizerConfig(_Strict):
    """SentencePiece model with the blank at id 0 and optional special symbols."""

    type: Literal["sentencepiece"] = "sentencepiece"
    file: str = "tokenizer.model"
    vocab_size: int
    blank_id: int = 0
    channel_change_token: str | None = None


class RescoringConfig(_Strict):
    """Second pass over final results: the word n-gram LM in ``word_lm_file`` (``asr-train lm --words``)
    rescores the beam's hypotheses (``server.search.rescoring``)."""

    word_lm_file: str
    weight: float = Field(0.5, ge=0.0)
    word_bonus: float = 0.0
    oov_penalty: float = Field(0.0, ge=0.0)
    # Weight of the CTC head's log-likelihood of each hypothesis (needs ``ctc_head``; decision 0015).
    ctc_weight: float = Field(0.0, ge=0.0)


class DecodingConfig(_Strict):
    """The model's default search, as measured in its card (servers may override it).

    beam 1 is greedy search (up to ``max_symbols_per_frame`` tokens per frame); beam > 1 is
    modified beam search (one token per frame), optionally fused with the token n-gram LM
    in ``lm_file`` (``asr-train lm``) at ``lm_weight``, with ``token_bonus`` added per token.
    """

    beam: int = Field(1, ge=1, le=64)
    lm_file: str | None = None
    lm_weight: float = Field(0.0, ge=0.0)
    token_bonus: float = 0.0
    rescoring: RescoringConfig | None = None


class ModelConfig(_Strict):
    """Everything needed to rebuild a checkpoint's network and run it."""

    format_version: int = FORMAT_VERSION
    name: str
    languages: list[str] = Field(default_factory=lambda: ["en"], min_length=1)
    multi_talker: bool = False
    features: FeatureConfig = Field(default_factory=FeatureConfig)
    encoder: EncoderConfig = Field(default_factory=EncoderConfig)
    decoder: DecoderConfig = Field(default_factory=DecoderConfig)
    joiner_dim: int = 256
    tokenizer: TokenizerConfig
    max_symbols_per_frame: int = Field(3, ge=1)
    # A CTC output layer on the encoder (trained as an auxiliary loss), kept to rescore final results.
    ctc_head: bool = False
    decoding: DecodingConfig = Field(default_factory=DecodingConfig)

    @property
    def sample_rate(self) -> int:
        return self.features.sample_rate

    @model_validator(mode="after")
    def _check(self) -> ModelConfig:
        if self.format_version != FORMAT_VERSION:
            raise ValueError(
                f"unknown format_version {self.format_version}; this server reads version {FORMAT_VERSION}"
            )
        if self.multi_talker and not self.tokenizer.channel_change_token:
            raise ValueError("multi_talker models need tokenizer.channel_change_token")
        rescoring = self.decoding.rescoring
        if rescoring is not None and rescoring.ctc_weight > 0 and not self.ctc_head:
            raise ValueError("decoding.rescoring.ctc_weight > 0 needs a model with ctc_head: true")
        return self
