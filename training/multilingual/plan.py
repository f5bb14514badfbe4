"""The drawn parameters of one utterance of a multilingual data set: language, text, voice, augmentations.

A plan is a function of (seed, split, utterance number) alone: each purpose (language, text, voice,
audio) has its own generator (``training.utterances.utterance_rng``), so changing, say, the
augmentation probabilities never changes which sentence or voice an utterance gets.
Utterances are rendered in batches of ``BATCH`` consecutive numbers; babble mixes in other
utterances of the same batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from training.multilingual.text import LanguageText, Sentence, heldout_sentence
from training.multilingual.voices import draw_voice, engines_for
from training.tts.base import Voice
from training.utterances import utterance_rng
from training.voices import Split

BATCH = 8
LANGUAGE_WEIGHTS = {"en": 0.28, "de": 0.18, "fr": 0.18, "es": 0.18, "it": 0.18}
# Probability of each augmentation (independent draws).
PROBABILITY = {"speed": 0.2, "tempo": 0.2, "reverb": 0.3, "noise": 0.5, "babble": 0.15, "telephone": 0.25}
NOISE_COLORS = ("white", "pink", "brown")
LAWS = ("mulaw", "alaw")
# Stored rates of items that do not go through the phone channel (which stores at 8 kHz).
SAMPLE_RATES = (8000, 16000, 22050, 44100)
SAMPLE_RATE_WEIGHTS = (0.08, 0.52, 0.2, 0.2)


@dataclass(frozen=True)
class Plan:
    """Everything needed to render utterance ``number``; ``None`` fields are augmentations not applied."""

    number: int
    sentence: Sentence
    voice: Voice
    engine_speed: float  # the engine's own rate control, 0.8-1.3
    sample_rate: int  # stored rate
    level_db: float  # RMS of the final mix, dBFS
    lead_s: float
    trail_s: float
    floor_db: float  # faint white floor under everything (a microphone never records digital zeros)
    noise_seed: int
    speed: float | None = None
    tempo: float | None = None
    rt60: float | None = None
    direct_db: float = 0.0
    noise: str | None = None
    snr_db: float = 0.0
    babble: tuple[tuple[int, float, float], ...] = field(default=())  # (other number, level dB below, offset)
    telephone: str | None = None  # G.711 law

    @property
    def audio_path(self) -> str:
        return f"audio/{self.number:07d}.flac"

    def augmentations(self) -> list[str]:
        """Names of the applied augmentations, in the order they are applied."""
        applied: list[tuple[str, object]] = [("speed", self.speed), ("tempo", self.tempo), ("reverb", self.rt60)]
        applied += [("babble", self.babble), ("noise", self.noise), ("telephone", self.telephone)]
        return [name for name, value in applied if value]


class Planner:
    """Draws plans for one data set (seed, split, languages, engines)."""

    def __init__(
        self,
        seed: int,
        split: Split,
        num_utterances: int,
        languages: tuple[str, ...],
        engines: tuple[str, ...] | None = None,
    ):
        self.seed, self.split, self.num_utterances, self.languages = seed, split, num_utterances, languages
        self._engines = {language: engines_for(language, split, engines) for language in languages}
        missing = [language for language, names in self._engines.items() if not names]
        if missing:
            raise ValueError(f"no {split} engine for {missing} among {engines or 'the installed engines'}")
        self._texts: dict[str, LanguageText] = {}

    def _language_and_sentence(self, number: int) -> Sentence:
        if self.split == "heldout":
            # Round robin: every language gets the same count, each cycling through its sentences.
            language = self.languages[(number - 1) % len(self.languages)]
            return heldout_sentence(language, (number - 1) // len(self.languages))
        rng = utterance_rng(self.seed, number, "language")
        (language,) = rng.choices(self.languages, weights=[LANGUAGE_WEIGHTS[code] for code in self.languages])
        if language not in self._texts:
            self._texts[language] = LanguageText(language)
        return self._texts[language].sample(utterance_rng(self.seed, number, f"text-{language}"))

    def plan(self, number: int) -> Plan:
        """The plan of utterance ``number`` (1-based)."""
        sentence = self._language_and_sentence(number)
        voice_rng = utterance_rng(self.seed, number, f"voice-{self.split}")
        voice = draw_voice(voice_rng, sentence.language, self.split, self._engines[sentence.language])
        rng = utterance_rng(self.seed, number, f"audio-{self.split}")
        draws = {name: rng.random() < probability for name, probability in PROBABILITY.items()}
        first = (number - 1) // BATCH * BATCH + 1
        mates = [n for n in range(first, min(first + BATCH, self.num_utterances + 1)) if n != number]
        babble: tuple[tuple[int, float, float], ...] = ()
        if draws["babble"] and mates:
            chosen = rng.sample(mates, min(len(mates), rng.randint(1, 3)))
            babble = tuple((n, round(rng.uniform(10.0, 25.0), 2), round(rng.uniform(0.0, 0.5), 3)) for n in chosen)
        (sample_rate,) = rng.choices(SAMPLE_RATES, weights=SAMPLE_RATE_WEIGHTS)
        return Plan(
            number=number,
            sentence=sentence,
            voice=voice,
            engine_speed=round(rng.uniform(0.8, 1.3), 3),
            sample_rate=8000 if draws["telephone"] else sample_rate,
            level_db=round(rng.uniform(-35.0, -14.0), 2),
            lead_s=round(rng.uniform(0.05, 0.5), 3),
            trail_s=round(rng.uniform(0.05, 0.5), 3),
            floor_db=round(rng.uniform(-85.0, -65.0), 2),
            noise_seed=rng.getrandbits(63),
            speed=round(rng.uniform(0.9, 1.1), 3) if draws["speed"] else None,
            tempo=round(rng.uniform(0.85, 1.15), 3) if draws["tempo"] else None,
            rt60=round(rng.uniform(0.2, 0.8), 3) if draws["reverb"] else None,
            direct_db=round(rng.uniform(-3.0, 10.0), 2),
            noise=rng.choice(NOISE_COLORS) if draws["noise"] else None,
            snr_db=round(rng.uniform(5.0, 30.0), 2),
            babble=babble,
            telephone=rng.choice(LAWS) if draws["telephone"] else None,
        )
