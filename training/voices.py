"""espeak-ng's English voices and the disjoint voice pools of the training and held-out splits.

A voice is ``base+variant`` (or a bare base voice). Some variants, and a stable pseudo-random
share of the other pairs, are held out, so the held-out set measures generalization to
voices the model never heard.
"""

from __future__ import annotations

import hashlib
from typing import Literal

Split = Literal["train", "heldout"]
SPLITS: tuple[Split, ...] = ("train", "heldout")

# espeak-ng's English voices (mbrola voices are not installed).
BASE_VOICES = (
    "en-us",
    "en",
    "en-gb-scotland",
    "en-gb-x-rp",
    "en-gb-x-gbclan",
    "en-gb-x-gbcwmd",
    "en-029",
    "en-us-nyc",
)
# The variants of espeak-ng-data/voices/!v (1.51), except "Mr serious" (a space in the name).
VARIANTS = (
    *(f"m{i}" for i in range(1, 9)),
    *(f"f{i}" for i in range(1, 6)),
    "klatt", *(f"klatt{i}" for i in range(2, 7)),
    "Alex", "Alicia", "Andrea", "Andy", "Annie", "AnxiousAndy", "Demonic", "Denis", "Diogo",
    "Gene", "Gene2", "Henrique", "Hugo", "Jacky", "Lee", "Marco", "Mario", "Michael", "Mike",
    "Nguyen", "RicishayMax", "RicishayMax2", "RicishayMax3", "Storm", "Tweaky", "UniRobot",
    "adam", "anika", "anikaRobot", "announcer", "antonio", "aunty", "belinda", "benjamin",
    "boris", "caleb", "croak", "david", "ed", "edward", "edward2", "fast", "grandma", "grandpa",
    "gustave", "iven", "iven2", "iven3", "iven4", "john", "kaukovalta", "linda", "marcelo",
    "max", "michel", "miguel", "norbert", "pablo", "paul", "pedro", "quincy", "rob", "robert",
    "robosoft", *(f"robosoft{i}" for i in range(2, 9)), "sandro", "shelby", "steph", "steph2",
    "steph3", "travis", "victor", "whisper", "whisperf", "zac",
)  # fmt: skip
# Never used for training, so the held-out set measures generalization to unseen voices.
HELDOUT_ONLY_VARIANTS = ("m7", "f4", "klatt3", "Annie", "edward2", "iven3", "robosoft4", "steph2")
# Besides those, this share of the other (base voice, variant) pairs is held out.
HELDOUT_PAIR_PERMILLE = 120


def _pair_is_heldout(base: str, variant: str) -> bool:
    """A stable pseudo-random choice per (base, variant) pair (independent of Python's hash seed)."""
    digest = hashlib.sha256(f"{base}+{variant}".encode()).digest()
    return int.from_bytes(digest[:4], "big") % 1000 < HELDOUT_PAIR_PERMILLE


def voice_pool(split: Split) -> tuple[str, ...]:
    """espeak-ng voice names (``base+variant`` or a bare base) of a split; the two are disjoint."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}")
    heldout: list[str] = []
    train: list[str] = list(BASE_VOICES)  # the bare base voices are training voices
    for base in BASE_VOICES:
        for variant in VARIANTS:
            name = f"{base}+{variant}"
            if variant in HELDOUT_ONLY_VARIANTS or _pair_is_heldout(base, variant):
                heldout.append(name)
            else:
                train.append(name)
    return tuple(heldout if split == "heldout" else train)
