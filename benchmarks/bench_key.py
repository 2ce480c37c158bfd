"""Key estimation methods on labelled material, scored with the weighted key score (MIREX).

Two sets, both scored on audio through the pipeline's own chroma (``features.spectra.compute_chroma``,
the chroma whose 12 means the library stores):

* ``generated``: pieces written in each of the 24 keys (chord progression I–IV–V–I or
  i–iv–V–i with a harmonic-minor dominant, a bass on the roots, a scale melody that leans on the
  tonic and dominant), three General MIDI instruments per key, rendered with fluidsynth + FluidR3.
  The key is known by construction.
* ``reference``: the scores of ``benchmarks/difficulty_reference.py`` (<work>/scores, renders in
  <work>/audio/base) — real compositions. Their reference key comes from a key-profile analysis of
  their notes (duration-weighted pitch classes, Krumhansl-Kessler); a piece is kept only where that
  analysis is unambiguous: Temperley's and Albrecht-Shanahan's profiles agree and the best key beats the second by at least
  ``--margin`` in correlation. This mimics the outside check.

Methods: each profile of ``harmony.key.PROFILES`` on the mean chroma (deployable from the stored
columns), and two frame-wise aggregations (per-frame and per-8-s-segment correlations summed) that
would need the frames. The baseline is the textbook one: Krumhansl on the mean chroma.
Weighted scores get 95 % bootstrap CIs over pieces (2,000 resamples, seed 0).

    nice -n 15 python benchmarks/bench_key.py [--work /work/bench_diff] [--cache /tmp/key_bench]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
from pathlib import Path

import common  # noqa: F401  (one BLAS thread, the project on sys.path)
import numpy as np

from music_pipeline.harmony.camelot import KEYS_ALL, key_name, weighted_score
from music_pipeline.harmony.key import KEYS, PROFILES, key_scores

SR = 22_050
SOUNDFONT = "/usr/share/sounds/sf2/FluidR3_GM.sf2"
PROGRAMS = {"piano": 0, "strings": 48, "guitar": 24, "organ": 19, "flute": 73, "epiano": 4}
SEGMENT_S = 8.0


def generated_piece(tonic: int, mode: str, program: int, seed: int, seconds: float = 24.0):
    """A pretty_midi piece in the key: chords, bass and a melody (tempo 100, 4/4)."""
    import pretty_midi

    rng = np.random.default_rng(seed)
    scale = [0, 2, 4, 5, 7, 9, 11] if mode == "major" else [0, 2, 3, 5, 7, 8, 11]  # harmonic minor
    triads = {1: [0, 2, 4], 4: [3, 5, 0], 5: [4, 6, 1], 6: [5, 0, 2], 2: [1, 3, 5]}
    progressions = [[1, 4, 5, 1], [1, 6, 4, 5], [1, 2, 5, 1], [1, 4, 1, 5]]
    beat = 0.6
    pm = pretty_midi.PrettyMIDI(initial_tempo=100)
    inst = pretty_midi.Instrument(program=program)
    base = 48 + tonic if tonic < 7 else 36 + tonic
    t = 0.0
    while t < seconds - 4 * beat:
        prog = progressions[int(rng.integers(len(progressions)))]
        if t + 16 * beat > seconds:
            prog = [1, 5, 1]  # a closing cadence
        for degree in prog:
            chord = [base + 12 + scale[d] + (12 if d < triads[degree][0] else 0) for d in triads[degree]]
            bar = 4 * beat
            for p in chord:
                inst.notes.append(pretty_midi.Note(70, p, t, t + bar * 0.95))
            inst.notes.append(pretty_midi.Note(80, base + scale[triads[degree][0]] - 12 + 12, t, t + bar * 0.95))
            m = t
            while m < t + bar - 1e-6:
                dur = beat * float(rng.choice([0.5, 1.0, 1.0, 2.0]))
                dur = min(dur, t + bar - m)
                deg = int(rng.choice(7, p=[0.25, 0.1, 0.15, 0.1, 0.2, 0.1, 0.1]))
                inst.notes.append(pretty_midi.Note(90, base + 24 + scale[deg], m, m + dur * 0.9))
                m += dur
            t += bar
    pm.instruments.append(inst)
    return pm


def render(pm, wav: Path) -> None:
    with tempfile.NamedTemporaryFile(suffix=".mid") as mid:
        pm.write(mid.name)
        subprocess.run(
            ["fluidsynth", "-ni", "-g", "0.5", "-r", str(SR), "-F", str(wav), "-T", "wav", SOUNDFONT, mid.name],
            check=True,
            capture_output=True,
        )


def chroma_of(wav: Path, cache: Path) -> np.ndarray:
    out = cache / (wav.parent.name + "__" + wav.stem + ".npy")
    if out.is_file():
        return np.load(out)
    from music_pipeline.audio.decode import decode
    from music_pipeline.features.spectra import compute_chroma

    audio = decode(wav)
    chroma = compute_chroma(audio.y, audio.sr)
    np.save(out, chroma)
    return chroma


def symbolic_key(midi: Path) -> tuple[tuple[int, str], float, bool] | None:
    """(key, Krumhansl margin, Temperley agrees) from duration-weighted pitch classes, or None."""
    import pretty_midi

    pm = pretty_midi.PrettyMIDI(str(midi))
    hist = np.zeros(12)
    for inst in pm.instruments:
        if inst.is_drum:
            continue
        for n in inst.notes:
            hist[n.pitch % 12] += n.end - n.start
    if hist.sum() <= 0:
        return None
    kk = key_scores(hist, "krumhansl")
    order = np.argsort(-kk)
    agree = all(int(np.argmax(key_scores(hist, p))) == int(order[0]) for p in ("temperley", "albrecht"))
    return KEYS[order[0]], float(kk[order[0]] - kk[order[1]]), agree


def methods(chroma: np.ndarray) -> dict[str, int]:
    """Index into KEYS of each method's estimate."""
    out = {}
    mean = chroma.mean(axis=1)
    for name in PROFILES:
        out[f"mean+{name}"] = int(np.argmax(key_scores(mean, name)))
    for combo in ("krumhansl+temperley", "krumhansl+albrecht", "krumhansl+temperley+albrecht"):
        out["mean+" + "/".join(c[:2] for c in combo.split("+"))] = int(np.argmax(key_scores(mean, combo)))
    frames = chroma.T
    for name in ("krumhansl", "temperley"):
        out[f"frames+{name}"] = int(np.argmax(key_scores(frames, name).sum(axis=0)))
    seg = max(1, int(SEGMENT_S * SR / 2048))
    segs = np.array([frames[i : i + seg].mean(axis=0) for i in range(0, len(frames), seg)])
    for name in ("krumhansl", "temperley"):
        out[f"segments+{name}"] = int(np.argmax(key_scores(segs, name).sum(axis=0)))
    return out


def bootstrap(scores: np.ndarray, n: int = 2000, seed: int = 0) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    means = scores[rng.integers(0, len(scores), (n, len(scores)))].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def score_table(rows: list[dict], title: str) -> dict:
    names = list(rows[0]["estimates"])
    print(f"\n{title}: {len(rows)} pieces")
    print(f"  {'method':<22} {'weighted':>8}  95% CI           exact")
    out = {}
    for m in names:
        s = np.array([weighted_score(KEYS[r["estimates"][m]], r["key"]) for r in rows])
        lo, hi = bootstrap(s)
        exact = float(np.mean(s == 1.0))
        out[m] = {"weighted": float(s.mean()), "ci": [lo, hi], "exact": exact}
        base = "  (baseline)" if m == "mean+krumhansl" else ""
        print(f"  {m:<22} {s.mean():8.3f}  [{lo:.3f}, {hi:.3f}]  {exact:.3f}{base}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", default="/work/bench_diff", help="difficulty_reference.py's work directory")
    ap.add_argument("--cache", default="/tmp/key_bench", help="renders and chroma cache")
    ap.add_argument("--margin", type=float, default=0.1, help="unambiguous: Krumhansl best − second ≥ this")
    ap.add_argument("--json", default=None, help="write the figures here")
    args = ap.parse_args()
    cache = Path(args.cache)
    (cache / "generated").mkdir(parents=True, exist_ok=True)

    gen_rows = []
    for i, (tonic, mode) in enumerate(KEYS_ALL):
        for j, (prog_name, prog) in enumerate(list(PROGRAMS.items())[(i % 2) * 3 : (i % 2) * 3 + 3]):
            wav = cache / "generated" / f"{key_name((tonic, mode)).replace(' ', '_')}_{prog_name}.wav"
            if not wav.is_file():
                render(generated_piece(tonic, mode, prog, seed=100 * i + j), wav)
            gen_rows.append({"piece": wav.stem, "key": (tonic, mode), "estimates": methods(chroma_of(wav, cache))})
    results = {"generated": score_table(gen_rows, "generated (24 keys × 3 instruments)")}

    work = Path(args.work)
    ref_rows, seen, kept_by = [], 0, {}
    for midi in sorted((work / "scores").glob("*/*.mid")):
        wav = work / "audio" / "base" / midi.parent.name / (midi.stem + ".wav")
        sym = symbolic_key(midi)
        if sym is None or not wav.is_file():
            continue
        seen += 1
        key, margin, agree = sym
        if margin < args.margin or not agree:
            continue
        kept_by[midi.parent.name] = kept_by.get(midi.parent.name, 0) + 1
        ref_rows.append({"piece": midi.stem, "key": key, "estimates": methods(chroma_of(wav, cache))})
    print(
        f"\nreference scores: {len(ref_rows)} of {seen} unambiguous (margin ≥ {args.margin}, Temperley and Albrecht agree): {kept_by}"
    )
    results["reference"] = score_table(ref_rows, "reference (real compositions, unambiguous)")
    results["reference_kept"] = {"kept": len(ref_rows), "seen": seen, "by_collection": kept_by}
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
