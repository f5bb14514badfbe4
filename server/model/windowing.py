"""Cut one stream's fbank frames into the overlapping windows that ``StreamingTransducer.step`` reads."""

from __future__ import annotations

import numpy as np


class FeatureWindows:
    """Buffers fbank frames of one stream and yields step windows.

    A full window has ``window`` frames and the next starts ``shift`` frames later (windows
    overlap by the subsampling context and the lookahead). At the end of the stream,
    ``final_windows`` yields the zero-padded remainder with its count of real frames.
    """

    def __init__(self, window: int, shift: int, num_mel_bins: int = 80) -> None:
        self.window = window
        self.shift = shift
        self._frames = np.zeros((0, num_mel_bins), np.float32)

    @property
    def num_buffered(self) -> int:
        return self._frames.shape[0]

    def push(self, frames: np.ndarray) -> None:
        """Append fbank frames (n, num_mel_bins)."""
        if frames.shape[0]:
            self._frames = np.concatenate([self._frames, frames.astype(np.float32, copy=False)])

    def ready(self) -> bool:
        """True when a full window is buffered."""
        return self.num_buffered >= self.window

    def pop_window(self) -> np.ndarray:
        """The next full window (window, num_mel_bins); the buffer advances by ``shift``."""
        window = self._frames[: self.window].copy()
        self._frames = self._frames[self.shift :]
        return window

    def final_windows(self, min_frames: int = 7) -> list[tuple[np.ndarray, int]]:
        """Zero-padded windows with their real frame counts for the rest of the stream.

        Called once, after the last ``push`` and after all full windows were popped. A
        window with fewer than ``min_frames`` real frames yields no encoder frame and is
        dropped. The buffer is emptied.
        """
        windows = []
        while self.num_buffered >= min_frames:
            real = min(self.num_buffered, self.window)
            padded = np.zeros((self.window, self._frames.shape[1]), np.float32)
            padded[:real] = self._frames[:real]
            windows.append((padded, real))
            if self.num_buffered - self.shift < min_frames:
                break
            self._frames = self._frames[self.shift :]
        self._frames = self._frames[:0]
        return windows
