"""The english cleaners and the symbol ids of the Tacotron2 recipe."""

from __future__ import annotations

import random

import pytest

from ramda.tasks.ljspeech import SPLITS, filelist_name, read_filelist, shipped_filelists
from ramda.tasks.ljspeech_text import (
    PAD_ID,
    SYMBOLS,
    english_cleaners,
    expand_numbers,
    sequence_to_text,
    text_to_sequence,
)

ONES_LIST = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
]
ONES_LIST += ["fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]
TENS = [None, None, "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]


def naive_under_100(n: int) -> str:
    if n < 20:
        return ONES_LIST[n]
    return TENS[n // 10] + ("" if n % 10 == 0 else "-" + ONES_LIST[n % 10])


def naive_under_1000(n: int) -> str:
    if n < 100:
        return naive_under_100(n)
    rest = n % 100
    return ONES_LIST[n // 100] + " hundred" + ("" if rest == 0 else " " + naive_under_100(rest))


def naive_cardinal(n: int) -> str:
    """English cardinal without "and" for n < 10**6 ("thousand," before a remainder of 100 or more)."""
    if n < 1000:
        return naive_under_1000(n)
    head, rest = divmod(n, 1000)
    sep = "" if rest == 0 else (", " if rest >= 100 else " ") + naive_under_1000(rest)
    return naive_under_1000(head) + " thousand" + sep


def naive_year(n: int) -> str:
    """1001..2999 read like a year."""
    if n == 2000:
        return "two thousand"
    if 2000 < n < 2010:
        return "two thousand " + ONES_LIST[n % 100]
    hi, lo = divmod(n, 100)
    if lo == 0:
        return naive_under_100(hi) + " hundred"
    return naive_under_100(hi) + " " + ("oh " + ONES_LIST[lo] if lo < 10 else naive_under_100(lo))


def test_cardinals_and_years_match_a_naive_speller():
    rng = random.Random()
    for n in [rng.randrange(0, 1001) for _ in range(25)] + [rng.randrange(3000, 10**6) for _ in range(25)]:
        assert expand_numbers(f"x {n} y") == f"x {naive_cardinal(n)} y", n
    for n in [rng.randrange(1001, 3000) for _ in range(30)] + [1100, 1905, 2000, 2001, 2009, 2010]:
        assert expand_numbers(str(n)) == naive_year(n), n


def test_thousands_separators_decimals_and_ordinals():
    rng = random.Random()
    n = rng.randrange(3000, 10**6)
    assert expand_numbers(f"{n:,}") == naive_cardinal(n)
    a, b = rng.randrange(3, 1000), rng.randrange(3, 1000)
    assert expand_numbers(f"{a}.{b}") == f"{naive_cardinal(a)} point {naive_cardinal(b)}"
    assert expand_numbers("1st 2nd 3rd 4th 11th 21st 100th") == (
        "first second third fourth eleventh twenty-first one hundredth"
    )


def test_currency():
    d, c = random.randrange(3, 1000), random.randrange(2, 100)
    assert expand_numbers(f"${d}.{c:02d}") == f"{naive_cardinal(d)} dollars, {naive_cardinal(c)} cents"
    assert expand_numbers("$1") == "one dollar"
    assert expand_numbers("$0.01") == "one cent"
    assert expand_numbers("$0.00") == "zero dollars"
    assert expand_numbers(f"${d:,}") == f"{naive_cardinal(d)} dollars"
    assert english_cleaners(f"£{d}") == f"{naive_cardinal(d)} pounds"


def test_english_cleaners_full_pipeline():
    assert english_cleaners("Mr. and Mrs.  Smith\tpaid $3.50 on the 21st of May, 1905.") == (
        "mister and misess smith paid three dollars, fifty cents on the twenty-first of may, "
        "nineteen oh five."
    )
    assert english_cleaners("Dr. Ng, Capt. Kidd, Lt. Col. X, Ft. Worth, St. Paul, Jr.") == (
        "doctor ng, captain kidd, lieutenant colonel x, fort worth, saint paul, junior"
    )
    assert english_cleaners("Café naïve Müller “quoted” — Ærø") == 'cafe naive muller "quoted" -- aero'
    # An abbreviation needs its full stop and a word boundary.
    assert english_cleaners("mrs mr. mistr. Co. cobalt.") == "mrs mister mistr. company cobalt."


def test_symbol_set_is_the_recipes():
    assert len(SYMBOLS) == 148 and len(set(SYMBOLS)) == 148
    assert SYMBOLS[PAD_ID] == "_" and PAD_ID == 0
    assert sum(s.startswith("@") for s in SYMBOLS) == 84
    assert "".join(s for s in SYMBOLS[:64] if len(s) == 1) == (
        "_-!'(),.:;? ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
    )


def test_text_to_sequence_round_trips_cleaned_text_and_reads_arpabet():
    rng = random.Random()
    alphabet = "abcdefghijklmnopqrstuvwxyz ,.!?'-;:()\"[]/"
    for _ in range(50):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 40)))
        ids = text_to_sequence(text)
        kept = "".join(ch for ch in english_cleaners(text) if ch in SYMBOLS and ch != "_")
        assert sequence_to_text(ids) == kept
        assert all(0 < i < len(SYMBOLS) for i in ids)
    ids = text_to_sequence("Say {HH AH0 L OW1} now.")
    assert [SYMBOLS[i] for i in ids[4:8]] == ["@HH", "@AH0", "@L", "@OW1"]
    assert sequence_to_text(ids) == "say {HH AH0 L OW1} now."


@pytest.mark.parametrize("split,count", [("train", 12500), ("val", 100), ("test", 500)])
def test_shipped_split_is_the_standard_one_and_all_of_it_is_speakable(split, count):
    items = read_filelist(shipped_filelists() / filelist_name(split))
    assert len(items) == count and len({i for i, _ in items}) == count
    lists = shipped_filelists()
    others = {i for s in SPLITS if s != split for i, _ in read_filelist(lists / filelist_name(s))}
    assert not others & {i for i, _ in items}
    for _, text in items:
        ids = text_to_sequence(text)
        assert ids and all(0 < i < 64 for i in ids)  # characters only, never the pad
