"""Log-mel filterbank front end, incremental, shared by training and serving.

Training and serving compute features with the same code path (kaldi-native-fbank's
OnlineFbank) so the model never sees a train/serve feature mismatch.
"""

from __future__ import annotations

import kaldi_native_fbank as knf
import numpy as np
import soxr

from server.model.config import FeatureConfig


def _fbank_options(config: FeatureConfig) -> knf.FbankOptions:
    opts = knf.FbankOptions()
    opts.frame_opts.samp_freq = float(config.sample_rate)
    opts.frame_opts.frame_length_ms = config.frame_length_ms
    opts.frame_opts.frame_shift_ms = config.frame_shift_ms
    # No dither: features (and so transcripts) are reproducible bit for bit.
    opts.frame_opts.dither = 0.0
    # snip_edges: frame i covers samples [i*shift, i*shift+length), so a frame never
    # depends on audio that has not arrived yet and streaming equals offline exactly.
    opts.frame_opts.snip_edges = True
    opts.mel_opts.num_bins = config.num_mel_bins
    return opts


def _whisper_options(config: FeatureConfig) -> knf.WhisperFeatureOptions:
    opts = knf.WhisperFeatureOptions()
    opts.dim = config.num_mel_bins
    opts.frame_opts.samp_freq = float(config.sample_rate)
    opts.frame_opts.dither = 0.0  # reproducible, as the Kaldi front end
    opts.frame_opts.snip_edges = True  # a frame never waits for future audio (see _fbank_options)
    return opts


def _whisper_scale(mel_power: np.ndarray, floor: float) -> np.ndarray:
    """Whisper's log-mel scaling of mel power frames (n, bins), with a fixed floor for streaming."""
    return (np.maximum(np.log10(np.maximum(mel_power, 1e-10)), floor) + 4.0) / 4.0


class FbankStream:
    """Incremental fbank of one audio stream.

    ``accept`` takes float32 samples in [-1, 1] at ``config.sample_rate`` and returns the
    frames (n, num_mel_bins) that became complete; concatenating all returned frames gives
    exactly ``compute_fbank`` of the whole signal.
    """

    def __init__(self, config: FeatureConfig | None = None) -> None:
        self.config = config or FeatureConfig()
        whisper = self.config.kind == "whisper"
        # OnlineWhisperFbank gives mel power; the scaling to Whisper's log-mel is ours.
        self._fbank = (
            knf.OnlineWhisperFbank(_whisper_options(self.config))
            if whisper
            else knf.OnlineFbank(_fbank_options(self.config))
        )
        self._whisper = whisper
        self._next_frame = 0

    def accept(self, samples: np.ndarray) -> np.ndarray:
        """Feed samples (n,) float32; return the newly completed frames (m, num_mel_bins)."""
        if samples.size:
            self._fbank.accept_waveform(float(self.config.sample_rate), np.ascontiguousarray(samples, np.float32))
        ready = self._fbank.num_frames_ready
        if ready == self._next_frame:
            return np.zeros((0, self.config.num_mel_bins), np.float32)
        # Copy before pop(): get_frame returns views into frames that pop() frees.
        frames = np.array([self._fbank.get_frame(i) for i in range(self._next_frame, ready)], np.float32)
        # Release consumed frames so a long stream's memory stays bounded.
        self._fbank.pop(ready - self._next_frame)
        self._next_frame = ready
        if self._whisper:
            return _whisper_scale(frames, self.config.whisper_log10_floor).astype(np.float32)
        return frames


def compute_fbank(samples: np.ndarray, sample_rate: int, config: FeatureConfig | None = None) -> np.ndarray:
    """Whole-utterance fbank (T, num_mel_bins) of float samples at any rate (resampled with soxr)."""
    config = config or FeatureConfig()
    if samples.ndim > 1:
        samples = samples.mean(axis=1)
    samples = samples.astype(np.float32, copy=False)
    if sample_rate != config.sample_rate:
        samples = soxr.resample(samples, sample_rate, config.sample_rate).astype(np.float32, copy=False)
    return FbankStream(config).accept(samples)
