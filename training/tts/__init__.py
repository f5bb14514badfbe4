"""Speech synthesis for training data: one module per engine behind a common interface.

    from training.tts import synthesize, voices
    voice = voices("de")[0]                      # Voice(engine="espeak", language="de", name="de")
    audio = synthesize("Guten Morgen", voice, 16000)   # float32 mono, shape (num_samples,)

Engines (``docs/voices-and-licences.md`` has each one's voices and licences): ``espeak`` (espeak-ng,
all five languages, base voices x variants), ``mbrola`` (en, de, fr diphone voices via espeak-ng),
``pico`` (SVOX Pico, all five), ``rhvoice`` (6 English), ``flite`` (5 English), ``piper`` (1 en_US),
``kokoro`` (Kokoro-82M, all five, 5 voice packs and their blends). Install the system engines with
``training/tts/install-engines.sh`` and the Python ones with the ``train`` extra.
"""

from training.tts.base import LANGUAGES, SynthesisError, Voice
from training.tts.registry import ENGINES, available_engines, engine, synthesize, voices

__all__ = ["ENGINES", "LANGUAGES", "SynthesisError", "Voice", "available_engines", "engine", "synthesize", "voices"]
