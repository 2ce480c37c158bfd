"""The development set across timbres: every reference score rendered on several instruments.

Used by ``bench_instruments.py``. The scores are those of ``difficulty_reference.py`` (Debian
packages and generated pieces, not the reserved corpus); each one is rendered again, the same
notes at the same loudness, on:

    piano        Acoustic Grand Piano (0)        the library the other renders are scored against
    organ        Church Organ (19)               sustained, octave and mixture ranks
    strings      String Ensemble 1 (48)          sustained, slow attack
    flute        Flute (73)                      sustained, breathy, one note at a time by nature
    guitar       Acoustic Guitar (nylon) (24)    plucked, fast decay
    harpsichord  Harpsichord (6)                 plucked, bright, no dynamics
    band         bass (33) below C3, electric piano (4) to E4, trumpet (56) above, plus a drum kit
                 (kick on the bass notes, hi-hat on an eighth-note grid): notes the score does not have
    room         the piano render through a 1.6 s reverberant room (synthetic impulse response)

    <work>/audio/inst_<instrument>/<collection>/<piece>.wav

with FluidR3 GM. ``--soundfont musescore``, ``timgm`` and ``csound`` render the same set with
other sample sets, MuseScore General Lite, TimGM6mb and csound's GM bank (``apt-get install
musescore-general-soundfont-small timgm6mb-soundfont csound-soundfont``), into
``inst_<instrument>@<sound font>``: what is learnt from some sound fonts is checked on one it never
heard. The shipped model learns from the first three; csound's is a last check only.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import difficulty_reference as ref
import numpy as np

INSTRUMENTS = {
    "piano": 0,
    "organ": 19,
    "strings": 48,
    "flute": 73,
    "guitar": 24,
    "harpsichord": 6,
    "band": None,
    "room": 0,
}
BAND = ((48, 33), (65, 4), (128, 56))  # (below this MIDI pitch, GM program)
BAND_HIHAT_S = 0.25
ROOM_RT60_S = 1.6
ROOM_WET = 0.5
ROOM_SEED = 11
SOUNDFONTS = {
    "fluidr3": ref.SOUNDFONT,
    "musescore": Path("/usr/share/sounds/sf3/MuseScore_General_Lite.sf3"),
    "timgm": Path("/usr/share/sounds/sf2/TimGM6mb.sf2"),
    "csound": Path("/usr/share/sounds/sf2/sf_GMbank.sf2"),  # kept out of every choice and model: a last check
}
DEFAULT_SOUNDFONT = "fluidr3"


def variant(instrument: str, soundfont: str = DEFAULT_SOUNDFONT) -> str:
    return f"inst_{instrument}" if soundfont == DEFAULT_SOUNDFONT else f"inst_{instrument}@{soundfont}"


def arranged(score: Path, instrument: str, dest: Path) -> None:
    """The score with every note on the instrument (band: split by register, drums added)."""
    import pretty_midi

    pm = pretty_midi.PrettyMIDI(str(score))
    notes = [n for inst in pm.instruments for n in inst.notes]
    out = pretty_midi.PrettyMIDI(initial_tempo=120.0)
    program = INSTRUMENTS[instrument]
    if program is not None:
        inst = pretty_midi.Instrument(program=program)
        inst.notes = list(notes)
        out.instruments.append(inst)
    else:
        parts = {prog: pretty_midi.Instrument(program=prog) for _, prog in BAND}
        for n in notes:
            prog = next(prog for below, prog in BAND if n.pitch < below)
            parts[prog].notes.append(n)
        drums = pretty_midi.Instrument(program=0, is_drum=True)
        end = max(n.end for n in notes)
        for t in np.arange(0.0, end, BAND_HIHAT_S):
            drums.notes.append(pretty_midi.Note(velocity=55, pitch=42, start=float(t), end=float(t) + 0.05))
        bass_onsets = sorted({round(n.start, 2) for n in parts[BAND[0][1]].notes})
        for t in bass_onsets:
            drums.notes.append(pretty_midi.Note(velocity=80, pitch=36, start=float(t), end=float(t) + 0.1))
        out.instruments.extend([p for p in parts.values() if p.notes] + [drums])
    out.write(str(dest))


def room(y: np.ndarray, sr: int = ref.SR) -> np.ndarray:
    """A reverberant room: exponentially decaying noise (RT60 ``ROOM_RT60_S``) mixed with the dry sound."""
    import scipy.signal

    rng = np.random.default_rng(ROOM_SEED)
    t = np.arange(int(ROOM_RT60_S * sr)) / sr
    ir = rng.standard_normal(len(t)) * np.exp(-6.91 * t / ROOM_RT60_S)
    ir /= np.sqrt(np.sum(ir**2))
    wet = scipy.signal.fftconvolve(y, ir)[: len(y)]
    return (1 - ROOM_WET) * y + ROOM_WET * wet


def render(score: Path, instrument: str, dest: Path, soundfont: str = DEFAULT_SOUNDFONT) -> None:
    """fluidsynth at 22,050 Hz, mono, at the reference loudness (−20 dBFS 95th-percentile block RMS)."""
    import soundfile as sf

    if dest.exists():
        return
    with tempfile.TemporaryDirectory() as tmp:
        mid, wav = Path(tmp) / "a.mid", Path(tmp) / "r.wav"
        arranged(score, instrument, mid)
        ref._run(
            [
                "fluidsynth",
                "-ni",
                "-g",
                "0.5",
                "-r",
                str(ref.SR),
                "-F",
                str(wav),
                "-T",
                "wav",
                str(SOUNDFONTS[soundfont]),
                str(mid),
            ],
            timeout=600,
        )
        y, _sr = sf.read(wav, dtype="float32", always_2d=True, frames=int((ref.MAX_SECONDS + 5) * ref.SR))
    y = y.mean(axis=1).astype(np.float64)
    if instrument == "room":
        y = room(y)
    y = y * 10 ** ((-20.0 - ref._level_db(y.astype(np.float32))) / 20)
    dest.parent.mkdir(parents=True, exist_ok=True)
    sf.write(dest, np.clip(y, -1, 1).astype(np.float32), ref.SR, subtype="PCM_16")
