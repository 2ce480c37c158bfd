"""Does the PDI stay put when the same notes are played by another instrument?

    python benchmarks/bench_instruments.py [--work DIR] [--workers 2] [--decoder NAME ...]

The development set (``difficulty_instruments.py``): every score of the difficulty reference
rendered on piano, organ, strings, flute, guitar, harpsichord, a band and a reverberant room. The
model's activations of every render are kept beside it (``.act.npz``), so note creation can be
replayed without the network (``--decoder``: the note-creation settings compared).

Scored as the outside check scores them: the PDI's scale and thresholds are fitted on the piano
renders only (a library built from them), every other render is scored on that saved scale.
Reported per instrument and pooled over the non-piano ones: Spearman ρ with the symbolic
composite, ρ with the same piece's piano PDI, the share of pieces changing level, the mean shift,
and per descriptor the median change of its normalised value; on piano, ρ over all pieces and
within collections. Intervals: 95 % bootstrap over pieces resampled within collections.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import difficulty_instruments as di
import difficulty_reference as ref
import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from music_pipeline.difficulty.note_descriptors import NOTE_DESCRIPTOR_NAMES
from music_pipeline.notes.score import complexity_composite

DEFAULT_WORK = Path("/work/bench_diff")
BOOT = 500

_TRANSCRIBER = None


def act_path(wav: Path) -> Path:
    return wav.with_suffix(".act.npz")


def save_activations(path: Path, acts) -> None:
    arrays = {"duration_s": np.float64(acts.duration_s), "gain_db": np.float64(acts.gain_db)}
    for i, e in enumerate(acts.excerpts):
        arrays |= {
            f"span_{i}": np.array([e.start_s, e.end_s]),
            f"times_{i}": e.times.astype(np.float64),
            f"frames_{i}": e.frames.astype(np.float16),
            f"onsets_{i}": e.onsets.astype(np.float16),
        }
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    tmp.replace(path)


def load_activations(path: Path):
    from music_pipeline.notes.transcribe import Activations, ExcerptActivations

    with np.load(path) as z:
        n = sum(1 for k in z.files if k.startswith("span_"))
        excerpts = [
            ExcerptActivations(
                *map(float, z[f"span_{i}"]),
                z[f"times_{i}"],
                z[f"frames_{i}"].astype(np.float32),
                z[f"onsets_{i}"].astype(np.float32),
            )
            for i in range(n)
        ]
        return Activations(excerpts, float(z["duration_s"]), float(z["gain_db"]))


def _analyse(path: str) -> None:
    global _TRANSCRIBER
    from music_pipeline.audio.decode import decode
    from music_pipeline.notes.transcribe import Transcriber

    if _TRANSCRIBER is None:
        _TRANSCRIBER = Transcriber(threads=1)
    out = act_path(Path(path))
    if not out.exists():
        save_activations(out, _TRANSCRIBER.excerpt_activations(decode(path).y))


def prepare(work: Path, workers: int, instruments: list[str], per_collection: int) -> pd.DataFrame:
    reference = ref.build_scores(work).groupby("collection", sort=False).head(per_collection).reset_index(drop=True)
    jobs = [
        (Path(r.score), inst, ref.audio_path(work, di.variant(inst), r.collection, r.piece))
        for inst in instruments
        for r in reference.itertuples()
    ]
    t0 = time.perf_counter()
    with ProcessPoolExecutor(workers) as pool:
        list(pool.map(di.render, *zip(*jobs, strict=True), chunksize=4))
    print(f"rendered {len(jobs)} ({time.perf_counter() - t0:.0f} s)", flush=True)
    t0 = time.perf_counter()
    with ProcessPoolExecutor(workers) as pool:
        list(pool.map(_analyse, [str(j[2]) for j in jobs], chunksize=4))
    print(f"activations of {len(jobs)} renders ({time.perf_counter() - t0:.0f} s)", flush=True)
    return reference


# --- note creation variants compared (replayed from the saved activations) -------------------------


def _creation(**kw):
    from music_pipeline.notes.transcribe import NoteCreation

    return NoteCreation(**kw)


DECODERS = {  # name -> NoteCreation settings
    "shipped": {},
    "no_melodia": {"melodia_trick": False},
    "overtones_1.5": {"overtone_confidence_ratio": 1.5},
    "no_melodia_overtones_1.5": {"melodia_trick": False, "overtone_confidence_ratio": 1.5},
    "frame_0.4": {"frame_threshold": 0.4},
    "onset_0.6": {"onset_threshold": 0.6},
}


def _descriptors(args) -> dict:
    path, decoder = args
    from music_pipeline.difficulty.instrument import note_confidence
    from music_pipeline.difficulty.note_descriptors import note_descriptors
    from music_pipeline.notes.transcribe import notes_from_activations

    notes = notes_from_activations(load_activations(Path(path)), _creation(**DECODERS[decoder]))
    return {**note_descriptors(notes), "n_notes": len(notes), "note_confidence": note_confidence(notes.confidence)}


def descriptor_table(work: Path, reference: pd.DataFrame, instruments: list[str], decoder: str, workers: int):
    cache = work / f"instruments_{decoder}.parquet"
    if cache.exists():
        cached = pd.read_parquet(cache)
        if len(cached) == len(reference) * len(instruments):
            return cached
    rows = [(inst, r.collection, r.piece) for inst in instruments for r in reference.itertuples()]
    paths = [str(act_path(ref.audio_path(work, di.variant(i), c, p))) for i, c, p in rows]
    with ProcessPoolExecutor(workers) as pool:
        values = list(pool.map(_descriptors, [(p, decoder) for p in paths], chunksize=8))
    table = pd.DataFrame(
        [{"instrument": i, "collection": c, "piece": p, **v} for (i, c, p), v in zip(rows, values, strict=True)]
    )
    table.to_parquet(cache)
    return table


def _embedding(path: str) -> np.ndarray:
    from music_pipeline.features.extract import extract_features

    return extract_features(path).embedding


def feature_table(work: Path, reference: pd.DataFrame, instruments: list[str], workers: int) -> pd.DataFrame:
    """The 641-D embedding of every render (for the instrument family), cached."""
    from music_pipeline.features.embedding import FEATURE_NAMES

    cache = work / "instruments_features.parquet"
    done = pd.read_parquet(cache) if cache.exists() else pd.DataFrame(columns=["instrument", "collection", "piece"])
    have = set(zip(done["instrument"], done["collection"], done["piece"], strict=True))
    rows = [
        (i, r.collection, r.piece)
        for i in instruments
        for r in reference.itertuples()
        if (i, r.collection, r.piece) not in have
    ]
    if rows:
        paths = [str(ref.audio_path(work, di.variant(i), c, p)) for i, c, p in rows]
        with ProcessPoolExecutor(workers) as pool:
            emb = np.stack(list(pool.map(_embedding, paths, chunksize=4)))
        new = pd.concat(
            [
                pd.DataFrame(rows, columns=["instrument", "collection", "piece"]),
                pd.DataFrame(emb, columns=FEATURE_NAMES),
            ],
            axis=1,
        )
        done = pd.concat([done, new], ignore_index=True)
        done.to_parquet(cache)
    return done


FAMILY_OF = {
    "piano": "piano",
    "room": "piano",
    "guitar": "plucked",
    "harpsichord": "plucked",
    "organ": "sustained",
    "strings": "sustained",
    "flute": "sustained",
    "band": "band",
}


def train_family(features: pd.DataFrame, out: Path | None) -> None:
    """Leave-one-collection-out accuracy of the family model, beside the majority class; then the
    model fitted on every render (written to ``out``, the package's shipped file)."""
    from music_pipeline.artifacts import write_npz
    from music_pipeline.difficulty.instrument import TIMBRE_FEATURES, fit_family_model

    X = features[TIMBRE_FEATURES].to_numpy(float)
    y = features["instrument"].map(FAMILY_OF).to_numpy()
    groups = features["collection"].to_numpy()
    for c in (0.01, 0.1, 1.0):
        pred = np.empty(len(y), dtype=object)
        prob = np.empty(len(y))
        for g in np.unique(groups):
            test = groups == g
            m = fit_family_model(X[~test], y[~test], TIMBRE_FEATURES, c)
            P = m.probabilities(X[test])
            pred[test] = np.array(m.families)[P.argmax(1)]
            prob[test] = P.max(1)
        acc = float(np.mean(pred == y))
        by = {f: float(np.mean(pred[y == f] == f)) for f in np.unique(y)}
        print(
            f"family model C={c}: leave-one-collection-out accuracy {acc:.3f}  "
            + "  ".join(f"{f} {v:.2f}" for f, v in by.items())
        )
    values, counts = np.unique(y, return_counts=True)
    print(f"  majority class ({values[counts.argmax()]}): {counts.max() / len(y):.3f}")
    if out is not None:
        model = fit_family_model(X, y, TIMBRE_FEATURES, 0.1)
        write_npz(out, model.arrays())
        print(f"family model fitted on {len(y)} renders -> {out}")


# --- scoring ----------------------------------------------------------------------------------------


def rho(a, b) -> float:
    return float(spearmanr(a, b).statistic)


def within(score, target, cols) -> float:
    return float(np.mean([rho(score[cols == c], target[cols == c]) for c in np.unique(cols)]))


def boot(fn, n, cols, seed=0) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    groups = [np.flatnonzero(cols == c) for c in np.unique(cols)]
    vals = []
    for _ in range(BOOT):
        idx = np.concatenate([rng.choice(g, len(g)) for g in groups])
        vals.append(fn(idx))
    return tuple(np.percentile(vals, [2.5, 97.5]))


def evaluate(reference: pd.DataFrame, table: pd.DataFrame, decoder: str) -> dict:
    from music_pipeline.difficulty.pdi import INTENSITY_DESCRIPTORS, fit_model

    target = complexity_composite(reference).to_numpy()
    cols = reference["collection"].to_numpy()
    key = reference[["collection", "piece"]]

    def rows(inst):
        t = key.merge(table[table["instrument"] == inst], on=["collection", "piece"], how="left")
        for n in INTENSITY_DESCRIPTORS:
            t[n] = 0.0  # audio intensity descriptors: not in the PDI (w_I = 0)
        return t.assign(key=t["piece"], content_hash=t["piece"])

    piano = rows("piano")
    model = fit_model(piano)
    base = model.score_frame(piano)
    p0, l0 = base["pdi"].to_numpy(), base["level"].to_numpy()
    print(f"\n=== decoder {decoder}: scale and thresholds fitted on {len(piano)} piano renders")
    all_ci = boot(lambda i: rho(p0[i], target[i]), len(p0), cols)
    print(
        f"piano: ρ(PDI, symbolic) {rho(p0, target):.3f} ({all_ci[0]:.3f}–{all_ci[1]:.3f}), within collections {within(p0, target, cols):.3f}  "
        + " ".join(f"{c}={rho(p0[cols == c], target[cols == c]):.2f}" for c in np.unique(cols))
    )
    out = {"decoder": decoder, "piano_all": rho(p0, target), "piano_within": within(p0, target, cols)}
    pooled = {"pdi": [], "piano": [], "target": [], "changed": [], "cols": []}
    norm_names = [f"norm_{n}" for n in NOTE_DESCRIPTOR_NAMES]
    shifts = {}
    for inst in di.INSTRUMENTS:
        if inst == "piano" or not (table["instrument"] == inst).any():
            continue
        s = model.score_frame(rows(inst))
        p = s["pdi"].to_numpy()
        changed = s["level"].to_numpy() != l0
        pooled["pdi"].append(p)
        pooled["piano"].append(p0)
        pooled["target"].append(target)
        pooled["changed"].append(changed)
        pooled["cols"].append(cols)
        shifts[inst] = np.median(s[norm_names].to_numpy() - base[norm_names].to_numpy(), axis=0)
        print(
            f"  {inst:<12} ρ(sym) {rho(p, target):.3f}  ρ(piano) {rho(p, p0):.3f}  level changed {changed.mean():5.1%}  "
            f"mean shift {np.mean(p - p0):+.3f}  within {within(p, target, cols):.3f}"
        )
        pooled.setdefault("confidence", []).append(rows(inst)["note_confidence"].to_numpy())
    P = {k: np.concatenate(v) for k, v in pooled.items()}
    err = np.abs(P["pdi"] - P["piano"])
    print(f"  note confidence vs |PDI - piano PDI| over the other renders: Spearman {rho(P['confidence'], err):.3f}")
    out |= {
        "other_sym": rho(P["pdi"], P["target"]),
        "other_piano": rho(P["pdi"], P["piano"]),
        "other_changed": float(P["changed"].mean()),
    }
    print(
        f"  pooled other: ρ(sym) {out['other_sym']:.3f}  ρ(piano) {out['other_piano']:.3f}  level changed {out['other_changed']:.1%}"
    )
    shift = pd.DataFrame(shifts, index=NOTE_DESCRIPTOR_NAMES)
    print(
        "median change of each normalised descriptor vs piano:\n" + shift.to_string(float_format=lambda v: f"{v:+.2f}")
    )
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", nargs="?", default="rank", choices=["rank", "train-family"])
    p.add_argument("--family-out", type=Path, default=None, help="train-family: write the fitted model here")
    p.add_argument("--work", type=Path, default=DEFAULT_WORK)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--instruments", default=",".join(di.INSTRUMENTS))
    p.add_argument("--decoder", action="append", choices=sorted(DECODERS))
    p.add_argument("--per-collection", type=int, default=20, help="the first N pieces of each collection")
    args = p.parse_args()
    instruments = args.instruments.split(",")
    reference = prepare(args.work, args.workers, instruments, args.per_collection)
    if args.mode == "train-family":
        train_family(feature_table(args.work, reference, instruments, args.workers), args.family_out)
        return
    for decoder in args.decoder or ["shipped"]:
        evaluate(reference, descriptor_table(args.work, reference, instruments, decoder, args.workers), decoder)


if __name__ == "__main__":
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    sys.exit(main())
