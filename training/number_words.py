"""Numbers spelled as words, as people say them (cardinals, ordinals, years) and the grammar's number slots."""

from __future__ import annotations

# fmt: off
_ONES = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
    "nineteen",
)
_TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
_ORDINAL_ONES = (
    "", "first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth",
    "tenth", "eleventh", "twelfth", "thirteenth", "fourteenth", "fifteenth", "sixteenth",
    "seventeenth", "eighteenth", "nineteenth",
)
_ORDINAL_TENS = (
    "", "", "twentieth", "thirtieth", "fortieth", "fiftieth", "sixtieth", "seventieth",
    "eightieth", "ninetieth",
)
# fmt: on


def number_to_words(n: int, use_and: bool = False) -> str:
    """Cardinal ``n`` (0 <= n < 1,000,000) in words: 312 -> "three hundred twelve".

    ``use_and`` gives the British/colloquial "three hundred and twelve".
    """
    if not 0 <= n < 1_000_000:
        raise ValueError(f"number out of range: {n}")
    if n < 20:
        return _ONES[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        return _TENS[tens] + (f" {_ONES[ones]}" if ones else "")
    if n < 1000:
        hundreds, rest = divmod(n, 100)
        head = f"{_ONES[hundreds]} hundred"
        return head if rest == 0 else f"{head} {'and ' if use_and else ''}{number_to_words(rest)}"
    thousands, rest = divmod(n, 1000)
    head = f"{number_to_words(thousands, use_and)} thousand"
    if rest == 0:
        return head
    joiner = " and " if use_and and rest < 100 else " "
    return head + joiner + number_to_words(rest, use_and)


def ordinal_to_words(n: int) -> str:
    """Ordinal ``n`` (1 <= n < 100) in words: 21 -> "twenty first"."""
    if not 1 <= n < 100:
        raise ValueError(f"ordinal out of range: {n}")
    if n < 20:
        return _ORDINAL_ONES[n]
    tens, ones = divmod(n, 10)
    return _ORDINAL_TENS[tens] if ones == 0 else f"{_TENS[tens]} {_ORDINAL_ONES[ones]}"


def year_to_words(year: int) -> list[str]:
    """The ways people say a year: 1998 -> "nineteen ninety eight"; 2005 -> "two thousand five" ..."""
    century, rest = divmod(year, 100)
    if 2000 <= year < 2010:
        forms = [number_to_words(year), number_to_words(year, use_and=True)]
    elif rest == 0:
        forms = [f"{number_to_words(century)} hundred"]
    elif rest < 10:
        forms = [f"{number_to_words(century)} oh {_ONES[rest]}"]
    else:
        forms = [f"{number_to_words(century)} {number_to_words(rest)}"]
    if 2010 <= year < 2100:
        forms.append(number_to_words(year))  # "two thousand fifteen" besides "twenty fifteen"
    return forms


def number_slots() -> dict[str, list[str]]:
    """Finite number vocabularies the grammar refers to as slots (``{num_2_20}`` ...)."""

    def cardinals(low: int, high: int) -> list[str]:
        return [number_to_words(n) for n in range(low, high + 1)]

    hundreds = sorted({number_to_words(n, use_and=flag) for n in range(100, 1000) for flag in (False, True)})
    return {
        "digit": [*_ONES[:10], "oh"],
        "digit_nz": list(_ONES[1:10]),
        "num_1_12": cardinals(1, 12),
        "num_2_12": cardinals(2, 12),
        "num_1_20": cardinals(1, 20),
        "num_2_20": cardinals(2, 20),
        "num_1_59": cardinals(1, 59),
        "num_2_59": cardinals(2, 59),
        "num_10_59": cardinals(10, 59),
        "num_5_25": ["five", "ten", "twenty", "twenty five"],
        "num_1_99": cardinals(1, 99),
        "num_2_99": cardinals(2, 99),
        "num_100_999": hundreds,
        "ordinal": [ordinal_to_words(n) for n in range(1, 32)],
        "year": [form for year in range(1950, 2031) for form in year_to_words(year)],
    }
