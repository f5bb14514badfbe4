"""The models a server serves: loading checkpoints into engines, lookup by name."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

from server.engine.engine import Engine
from server.model.checkpoint import CONFIG_FILE
from server.model.quantize import RANGES_FILE, int8_available, is_quantized, quantize_for_cpu, read_ranges
from server.search.loading import load_model_and_search

log = logging.getLogger(__name__)


def find_model_dirs(models_dir: Path) -> list[Path]:
    """Checkpoint directories (holding a config.json) directly under ``models_dir``, by name."""
    return sorted(p for p in Path(models_dir).iterdir() if (p / CONFIG_FILE).is_file())


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when a GPU is usable, else ``cpu``."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was requested but no CUDA device is available")
    return device


class ModelRegistry:
    """Engines by model name, and the default model."""

    def __init__(self, engines: Iterable[Engine], default: str | None = None) -> None:
        self.engines: dict[str, Engine] = {}
        for engine in engines:
            if engine.name in self.engines:
                raise ValueError(f"two models are named {engine.name!r}")
            self.engines[engine.name] = engine
        if not self.engines:
            raise ValueError("no models to serve")
        if default is None:
            default = next(iter(self.engines))
        if default not in self.engines:
            raise ValueError(f"default model {default!r} is not among the loaded models {sorted(self.engines)}")
        self.default = default

    def get(self, name: str) -> Engine | None:
        """The engine of ``name`` ("" for the default), or None."""
        return self.engines.get(name or self.default)

    @classmethod
    def load(
        cls,
        model_dirs: list[Path],
        *,
        device: str,
        capacity: int,
        max_batch_size: int,
        max_wait_s: float,
        default: str | None = None,
        beam_size: int | None = None,
        step_timeout_s: float = 0.0,
        int8: bool = False,
    ) -> ModelRegistry:
        """Load checkpoints onto ``device`` (already resolved) and wrap each in an engine.

        ``beam_size`` overrides each model's default search width (1 = greedy); a model step
        running longer than ``step_timeout_s`` (0: no limit) ends its streams (the watchdog);
        ``int8``: on the CPU, quantize each model's encoder and joiner output with its calibrated
        input ranges (``quantize_for_cpu``; a model without them stays float32).
        """
        engines = []
        for model_dir in model_dirs:
            model, search = load_model_and_search(model_dir, device=device)
            if int8 and device == "cpu":
                ranges = read_ranges(model_dir)
                if ranges is None:
                    log.info("model %s has no %s (asr-train calibrate-int8): float32", model.config.name, RANGES_FILE)
                elif not int8_available():
                    log.warning(
                        "this torch build has no fbgemm int8 linear (x86 CPUs): model %s stays float32",
                        model.config.name,
                    )
                else:
                    quantize_for_cpu(model, ranges)
            log.info(
                "loaded model %s from %s (%d parameters, languages %s, multi-talker %s, %s)",
                model.config.name,
                model_dir,
                model.num_parameters,
                model.config.languages,
                model.config.multi_talker,
                "int8 encoder and joiner" if is_quantized(model) else "float32",
            )
            if beam_size is not None:
                search = search.with_options(beam=beam_size)
            log.info(
                "model %s decodes with beam %d, LM weight %.2f",
                model.config.name,
                search.beam,
                search.options.lm_weight if search.fused_lm is not None else 0.0,
            )
            engines.append(Engine(model, device, capacity, max_batch_size, max_wait_s, search, step_timeout_s))
        if default is None and engines:
            default = engines[0].name
        return cls(engines, default)

    async def start(self, warmup: bool = True) -> None:
        for engine in self.engines.values():
            await engine.start(warmup)

    async def stop(self) -> None:
        for engine in self.engines.values():
            await engine.stop()
