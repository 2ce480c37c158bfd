"""Keys as names and Camelot codes, how two keys relate, and which transitions mix well.

A key is ``(tonic, mode)``: tonic a pitch class 0–11 (C = 0), mode ``"major"`` or ``"minor"``.
Names spell the tonic the way the Camelot wheel does ("F# minor", "Bb major", "Eb minor"); any
enharmonic spelling ("A# minor", "Gb major") and Camelot codes ("8A") are read back.

Camelot: 8B = C major, 8A = A minor; one step clockwise is a fifth up. Keys that mix well: the
same code, a neighbour (±1, same letter) and the relative key (same number, other letter).
"""

from __future__ import annotations

import re

MODES = ("major", "minor")
# How the wheel spells each tonic (the key signature with fewer accidentals; ties as the wheel)
MAJOR_NAMES = ["C", "Db", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B"]
MINOR_NAMES = ["C", "C#", "D", "Eb", "E", "F", "F#", "G", "G#", "A", "Bb", "B"]
_LETTERS = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
_ACCIDENTALS = {"": 0, "#": 1, "♯": 1, "b": -1, "♭": -1}
CAMELOT_LETTER = {"major": "B", "minor": "A"}

# Weighted key score (MIREX): same key 1, a fifth 0.5, relative 0.3, parallel 0.2, else 0
RELATION_WEIGHTS = {"same": 1.0, "fifth": 0.5, "relative": 0.3, "parallel": 0.2, "other": 0.0}

# Harmonic mixing: tempi within ±6 % of each other, or of half / double the other
TEMPO_TOLERANCE = 0.06
TEMPO_RATIOS = (0.5, 1.0, 2.0)

Key = tuple[int, str]


def key_name(key: Key) -> str:
    tonic, mode = key
    names = MAJOR_NAMES if mode == "major" else MINOR_NAMES
    return f"{names[tonic % 12]} {mode}"


def camelot(key: Key) -> str:
    """The Camelot code: C major 8B, A minor 8A, G major 9B."""
    tonic, mode = key
    major_tonic = tonic if mode == "major" else (tonic + 3) % 12  # the relative major shares the number
    number = (7 * major_tonic + 8) % 12 or 12
    return f"{number}{CAMELOT_LETTER[mode]}"


def parse_key(text: str) -> Key:
    """``"F# minor"``, ``"Bb"`` (major), ``"g#m"``, ``"A#min"`` or a Camelot code ``"8A"``."""
    t = str(text).strip()
    m = re.fullmatch(r"(1[0-2]|[1-9])\s*([ABab])", t)
    if m:
        number, letter = int(m.group(1)), m.group(2).upper()
        major_tonic = (7 * (number - 8)) % 12  # 7 is its own inverse mod 12
        return (major_tonic, "major") if letter == "B" else ((major_tonic - 3) % 12, "minor")
    m = re.fullmatch(r"([A-Ga-g])([#♯b♭]?)\s*(major|maj|minor|min|m|M)?", t)
    if not m:
        raise ValueError(f"not a key: {text!r} (e.g. 'F# minor', 'Bb major' or a Camelot code like '8A')")
    tonic = (_LETTERS[m.group(1).upper()] + _ACCIDENTALS[m.group(2)]) % 12
    mode = "minor" if (m.group(3) or "").lower() in ("minor", "min", "m") and m.group(3) != "M" else "major"
    return tonic, mode


def relation(estimate: Key, reference: Key, descending_fifths: bool = False) -> str:
    """How an estimated key relates to a reference (MIREX, as mir_eval scores it): same, fifth (the
    estimate's tonic a perfect fifth above the reference's, same mode; below too with
    ``descending_fifths``), relative, parallel or other."""
    (et, em), (rt, rm) = estimate, reference
    if em == rm:
        if et == rt:
            return "same"
        return "fifth" if (et - rt) % 12 == 7 or (descending_fifths and (et - rt) % 12 == 5) else "other"
    if et == rt:
        return "parallel"
    relative = (rt + 9) % 12 if rm == "major" else (rt + 3) % 12
    return "relative" if et == relative else "other"


def weighted_score(estimate: Key, reference: Key) -> float:
    return RELATION_WEIGHTS[relation(estimate, reference)]


def camelot_step(a: Key, b: Key) -> str:
    """The move from key ``a`` to key ``b`` on the wheel: "same", "+1", "-1" (a neighbour), "relative"
    (same number, other letter) or "clash"."""
    ca, cb = camelot(a), camelot(b)
    na, la, nb, lb = int(ca[:-1]), ca[-1], int(cb[:-1]), cb[-1]
    if ca == cb:
        return "same"
    if la == lb and (nb - na) % 12 == 1:
        return "+1"
    if la == lb and (na - nb) % 12 == 1:
        return "-1"
    if na == nb:
        return "relative"
    return "clash"


def keys_compatible(a: Key, b: Key) -> bool:
    return camelot_step(a, b) != "clash"


def tempo_ratio(a_bpm: float, b_bpm: float) -> float:
    """b's tempo over a's, after taking half or double time where that is closer to 1."""
    return min((b_bpm * r / a_bpm for r in TEMPO_RATIOS), key=lambda x: abs(x - 1.0))


def tempo_compatible(a_bpm: float, b_bpm: float, tolerance: float = TEMPO_TOLERANCE) -> bool:
    if not (a_bpm > 0 and b_bpm > 0):
        return False
    return abs(tempo_ratio(a_bpm, b_bpm) - 1.0) <= tolerance + 1e-12


def mixes_well(a: Key, a_bpm: float, b: Key, b_bpm: float) -> bool:
    """A harmonic-mix step: Camelot-compatible keys and tempi within ±6 % (half/double allowed)."""
    return keys_compatible(a, b) and tempo_compatible(a_bpm, b_bpm)


KEYS_ALL: list[Key] = [(t, m) for m in MODES for t in range(12)]  # the 24 keys, majors first


def mix_mask(keys: list[Key | None], tempi, key: Key | None, bpm: float):
    """Which of the tracks (``keys``, ``tempi``) may follow a track in ``key`` at ``bpm`` in a
    harmonic mix (``mixes_well``), as a boolean array; nothing may follow an unknown key or tempo."""
    import numpy as np

    tempi = np.asarray(tempi, dtype=np.float64)
    if key is None or not bpm > 0:
        return np.zeros(len(keys), dtype=bool)
    ok_key = np.array([k is not None and keys_compatible(key, k) for k in keys], dtype=bool)
    ok_tempo = np.zeros(len(keys), dtype=bool)
    with np.errstate(invalid="ignore"):
        for r in TEMPO_RATIOS:
            ok_tempo |= np.abs(tempi * r / bpm - 1.0) <= TEMPO_TOLERANCE + 1e-12
    return ok_key & ok_tempo
