"""English text front end of the NVIDIA Tacotron2 recipe: the ``english_cleaners`` and the symbol ids.

Cleaning, in order: amounts in pounds sterling are spelled out (before transliteration, which would turn
"£" into "PS"), transliteration to ASCII (``unidecode``), lowercase, numbers spelled out (thousands
separators dropped, dollars and cents, decimals with "point", ordinals, years 1001-2999 read in pairs of
digits, other integers as cardinals), abbreviations expanded ("mr." -> "mister", ...), runs of whitespace
collapsed to one space. LJSpeech's shipped transcripts contain no digits and no "£", so on them only the
transliteration, lowercasing, abbreviations and whitespace steps act.

Symbols (148, the recipe's ``n_symbols``): the pad ``_`` (id 0, also the padding id of batches), ``-``,
the punctuation ``!'(),.:;?`` and space, the ASCII letters, then the 84 ARPAbet phones prefixed with ``@``.
Text inside curly braces is read as ARPAbet (``{HH AH0 L OW1}``); characters outside the set are dropped.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

_PAD = "_"
_HYPHEN = "-"
_PUNCTUATION = "!'(),.:;? "
_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_VOWELS = ("AA", "AE", "AH", "AO", "AW", "AY", "EH", "ER", "EY", "IH", "IY", "OW", "OY", "UH", "UW")
_CONSONANTS = ("B", "CH", "D", "DH", "F", "G", "HH", "JH", "K", "L", "M", "N", "NG", "P", "R", "S", "SH", "T")
_CONSONANTS += ("TH", "V", "W", "Y", "Z", "ZH")
ARPABET: tuple[str, ...] = tuple(
    sorted([v + s for v in _VOWELS for s in ("", "0", "1", "2")] + list(_CONSONANTS))
)
SYMBOLS: tuple[str, ...] = (
    _PAD,
    *_HYPHEN,
    *_PUNCTUATION,
    *_LETTERS,
    *("@" + p for p in ARPABET),
)
SYMBOL_TO_ID: dict[str, int] = {s: i for i, s in enumerate(SYMBOLS)}
PAD_ID = SYMBOL_TO_ID[_PAD]

ABBREVIATIONS: dict[str, str] = {
    "mrs": "misess",
    "mr": "mister",
    "dr": "doctor",
    "st": "saint",
    "co": "company",
    "jr": "junior",
    "maj": "major",
    "gen": "general",
    "drs": "doctors",
    "rev": "reverend",
    "lt": "lieutenant",
    "hon": "honorable",
    "sgt": "sergeant",
    "capt": "captain",
    "esq": "esquire",
    "ltd": "limited",
    "col": "colonel",
    "ft": "fort",
}
_ABBREVIATION_RE = re.compile(r"\b(" + "|".join(ABBREVIATIONS) + r")\.", re.IGNORECASE)
_WHITESPACE_RE = re.compile(r"\s+")
_THOUSANDS_RE = re.compile(r"([0-9][0-9,]+[0-9])")
_POUNDS_RE = re.compile(r"£([0-9,]*[0-9]+)")
_DOLLARS_RE = re.compile(r"\$([0-9.,]*[0-9]+)")
_DECIMAL_RE = re.compile(r"([0-9]+\.[0-9]+)")
_ORDINAL_RE = re.compile(r"[0-9]+(st|nd|rd|th)")
_NUMBER_RE = re.compile(r"[0-9]+")
_CURLY_RE = re.compile(r"(.*?)\{(.+?)\}(.*)")


@lru_cache(maxsize=1)
def _inflect() -> Any:
    import inflect

    return inflect.engine()


def _words(number: int | str, **kwargs: object) -> str:
    return _inflect().number_to_words(number, **kwargs)


def _dollars(match: re.Match[str]) -> str:
    """``$d.c`` -> "d dollars, c cents" (singular for 1, "zero dollars" for 0)."""
    parts = match.group(1).split(".")
    if len(parts) > 2:
        return match.group(1) + " dollars"  # not a well-formed amount: leave the digits to the later rules
    dollars = int(parts[0]) if parts[0] else 0
    cents = int(parts[1]) if len(parts) > 1 and parts[1] else 0
    out = []
    if dollars:
        out.append(f"{dollars} {'dollar' if dollars == 1 else 'dollars'}")
    if cents:
        out.append(f"{cents} {'cent' if cents == 1 else 'cents'}")
    return ", ".join(out) if out else "zero dollars"


def _cardinal_or_year(match: re.Match[str]) -> str:
    """Integers 1001-2999 are read like years ("nineteen oh five", "two thousand seven"); others as
    cardinals without "and"."""
    num = int(match.group(0))
    if 1000 < num < 3000:
        if num == 2000:
            return "two thousand"
        if 2000 < num < 2010:
            return "two thousand " + _words(num % 100)
        if num % 100 == 0:
            return _words(num // 100) + " hundred"
        return _words(num, andword="", zero="oh", group=2).replace(", ", " ")
    return _words(num, andword="")


def expand_numbers(text: str) -> str:
    """Spell out numbers: separators, dollars, decimals, ordinals, then years/cardinals."""
    text = _THOUSANDS_RE.sub(lambda m: m.group(1).replace(",", ""), text)
    text = _DOLLARS_RE.sub(_dollars, text)
    text = _DECIMAL_RE.sub(lambda m: m.group(1).replace(".", " point "), text)
    text = _ORDINAL_RE.sub(lambda m: _words(m.group(0)), text)
    return _NUMBER_RE.sub(_cardinal_or_year, text)


def expand_abbreviations(text: str) -> str:
    """``mr.`` -> ``mister`` etc. (case-insensitive; the replacement is lowercase)."""
    return _ABBREVIATION_RE.sub(lambda m: ABBREVIATIONS[m.group(1).lower()], text)


def english_cleaners(text: str) -> str:
    """The recipe's ``english_cleaners``: pounds, transliterate, lowercase, numbers, abbreviations, spaces."""
    from unidecode import unidecode

    text = _POUNDS_RE.sub(lambda m: m.group(1).replace(",", "") + " pounds", text)
    text = unidecode(text).lower()
    text = expand_numbers(text)
    text = expand_abbreviations(text)
    return _WHITESPACE_RE.sub(" ", text)


def _to_ids(symbols: list[str] | str) -> list[int]:
    return [SYMBOL_TO_ID[s] for s in symbols if s in SYMBOL_TO_ID and s != _PAD]


def text_to_sequence(text: str) -> list[int]:
    """Symbol ids of ``text`` after :func:`english_cleaners`; ``{...}`` spans are ARPAbet phones."""
    ids: list[int] = []
    while text:
        match = _CURLY_RE.match(text)
        if match is None:
            ids += _to_ids(english_cleaners(text))
            break
        ids += _to_ids(english_cleaners(match.group(1)))
        ids += _to_ids(["@" + phone for phone in match.group(2).split()])
        text = match.group(3)
    return ids


def sequence_to_text(ids: list[int]) -> str:
    """Inverse of :func:`text_to_sequence` up to cleaning (ARPAbet phones come back as ``{...}``)."""
    out = []
    for i in ids:
        s = SYMBOLS[i]
        out.append("{" + s[1:] + "}" if s.startswith("@") else s)
    return "".join(out).replace("}{", " ")
