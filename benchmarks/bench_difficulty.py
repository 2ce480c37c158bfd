"""Does the PDI rank real music by how hard it is to play? Measured on an outside reference.

    python benchmarks/bench_difficulty.py [--work DIR] [--workers 2] [--fit]   # ranking + invariance
    python benchmarks/bench_difficulty.py speed [--library DIR] [--limit N]     # track_notes cost
    python benchmarks/bench_difficulty.py cnn [--library DIR] [--tracks 140]     # difficulty_cnn cost
    python benchmarks/bench_difficulty.py [rank|compare] --notes-budget 30s6x      # another notes budget

The reference (``difficulty_reference.py``): 6 collections of scores from Debian packages plus
generated pieces, rendered with fluidsynth, one instrument per piece, one loudness, and four
variants of every render (12 dB quieter, 12 dB louder, darker, brighter). Symbolic complexity is
measured on the scores (``music_pipeline/notes/score.py``); the PDI only hears the audio.

Held-out design: the scale (library quantiles) is fitted on all base renders — unsupervised, as
``music-pipeline build`` does on any library. The shipped PDI (equal weights) fits nothing on the
reference. Fitted weightings are evaluated leave-collection-out: weights fitted (non-negative
least squares, or proportional to each descriptor's ρ) on every collection but one, then that
collection is scored, so each piece's PDI comes from weights that never saw its collection.
Reported: Spearman ρ over all pieces and within each collection (mean over collections), 95 %
bootstrap intervals (pieces resampled within collections, 1000×), beside baselines measured the
same way: the previous PDI (13 audio descriptors), the 4 anchor statistics, every single
descriptor. Invariance: the variants scored on the base renders' saved scale and thresholds.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import difficulty_reference as ref
import numpy as np
import pandas as pd
from common import audio_files, step_seconds
from scipy.optimize import nnls
from scipy.stats import spearmanr

from music_pipeline.difficulty.audio_descriptors import DESCRIPTOR_NAMES
from music_pipeline.difficulty.note_descriptors import NOTE_DESCRIPTOR_NAMES
from music_pipeline.notes.score import complexity_composite

DEFAULT_WORK = Path("data/bench_difficulty")


def ref_demo() -> Path:
    from common import DEMO

    return DEMO


BOOT = 1000

_TRANSCRIBER = None
_BUDGET = None  # the notes budget of this worker (--notes-budget); None = the shipped one


def _init_worker(budget) -> None:
    global _BUDGET
    _BUDGET = budget


def parse_budget(tag: str):
    """'30s6x' -> Budget(30, 6): the tag the notes store writes (``Budget.tag``)."""
    from music_pipeline.notes.transcribe import Budget

    seconds, excerpts = re.fullmatch(r"([0-9.]+)s([0-9]+)x", tag).groups()
    return Budget(float(seconds), int(excerpts))


def _analyse(path: str) -> dict:
    """Audio descriptors (the 13) and note descriptors of one render; the notes themselves (and
    the model's active pitches per frame) are kept beside the render as ``.notes.npz``."""
    global _TRANSCRIBER
    from music_pipeline.audio.decode import decode
    from music_pipeline.difficulty.note_descriptors import note_descriptors
    from music_pipeline.features.extract import extract_features
    from music_pipeline.notes.transcribe import Transcriber

    if _TRANSCRIBER is None:
        _TRANSCRIBER = Transcriber(threads=1, **({"budget": _BUDGET} if _BUDGET else {}))
    t0 = time.process_time()
    feats = extract_features(path)
    t1 = time.process_time()
    t = _TRANSCRIBER.transcribe(decode(path).y)
    desc = note_descriptors(t.notes)
    t2 = time.process_time()
    if _BUDGET is None:  # the notes kept beside the render are the shipped budget's
        np.savez_compressed(
            Path(path).with_suffix(".notes.npz"), **t.notes.to_arrays(), active_pitches=t.active_pitches
        )
    return {
        **feats.descriptors,
        **desc,
        "duration_s": feats.duration_s,
        "features_cpu_s": t1 - t0,
        "notes_cpu_s": t2 - t1,
        "n_notes": len(t.notes),
    }


def _audio_descriptors(path: str) -> dict:
    from music_pipeline.features.extract import extract_features

    return extract_features(path).descriptors


def _migrate(done: pd.DataFrame, work: Path, variant: str, workers: int) -> pd.DataFrame:
    """Analyses written before the note pitch-class entropy got its own name had the audio one
    overwritten by it: rename, and compute the audio descriptors again."""
    if not len(done) or "note_pitch_class_entropy" in done.columns:
        return done
    done = done.rename(columns={"pitch_class_entropy": "note_pitch_class_entropy"})
    paths = [str(ref.audio_path(work, variant, c, p)) for c, p in zip(done["collection"], done["piece"], strict=True)]
    with ProcessPoolExecutor(workers) as pool:
        audio = pd.DataFrame(list(pool.map(_audio_descriptors, paths, chunksize=4)))
    for c in audio.columns:
        done[c] = audio[c].to_numpy()
    done.to_parquet(work / f"analysis_{variant}.parquet")
    return done


def analyse_variant(work: Path, reference: pd.DataFrame, variant: str, workers: int, budget=None) -> pd.DataFrame:
    out = work / (f"analysis_{variant}.parquet" if budget is None else f"analysis_{variant}_{budget.tag}.parquet")
    done = _migrate(pd.read_parquet(out) if out.exists() else pd.DataFrame(), work, variant, workers)
    have = set(zip(done["collection"], done["piece"], strict=True)) if len(done) else set()
    todo = [r for r in reference.itertuples() if (r.collection, r.piece) not in have]
    if todo:
        paths = [str(ref.audio_path(work, variant, r.collection, r.piece)) for r in todo]
        with ProcessPoolExecutor(workers, initializer=_init_worker, initargs=(budget,)) as pool:
            rows = list(pool.map(_analyse, paths, chunksize=2))
        new = pd.DataFrame(
            [{"collection": r.collection, "piece": r.piece, **row} for r, row in zip(todo, rows, strict=True)]
        )
        done = pd.concat([done, new], ignore_index=True)
        done.to_parquet(out)
    return reference[["collection", "piece"]].merge(done, on=["collection", "piece"], how="left")


def prepare(work: Path, workers: int, variants: list[str], budget=None) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    print(f"reference under {work}")
    reference = ref.build_scores(work)
    jobs = [
        (Path(r.score), {v: ref.audio_path(work, v, r.collection, r.piece) for v in variants})
        for r in reference.itertuples()
    ]
    t0 = time.perf_counter()
    with ProcessPoolExecutor(workers) as pool:
        list(pool.map(ref.render, *zip(*jobs, strict=True)))
    print(f"rendered {len(jobs)} pieces × {len(variants)} variants ({time.perf_counter() - t0:.0f} s)")
    analyses = {}
    for v in variants:
        t0 = time.perf_counter()
        analyses[v] = analyse_variant(work, reference, v, workers, budget)
        print(f"analysed {v} ({time.perf_counter() - t0:.0f} s)")
    return reference, analyses


# --- scoring procedures -------------------------------------------------------------------------


def spearman(a, b) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(spearmanr(a, b).statistic)


def fit_weights(norm: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Non-negative least squares of the target's ranks (0–1) on the normalised descriptors
    (both centred), normalised to sum 1; equal weights if nothing is positive."""
    from scipy.stats import rankdata

    t = (rankdata(target) - 0.5) / len(target)
    A = norm - norm.mean(axis=0)
    w, _ = nnls(A, t - t.mean())
    return w / w.sum() if w.sum() > 0 else np.full(norm.shape[1], 1.0 / norm.shape[1])


def correlation_weights(norm: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Weights proportional to each descriptor's Spearman ρ with the target (negative ρ → 0)."""
    rho = np.array([spearman(norm[:, j], target) for j in range(norm.shape[1])])
    w = np.clip(np.nan_to_num(rho), 0, None)
    return w / w.sum() if w.sum() > 0 else np.full(norm.shape[1], 1.0 / norm.shape[1])


def leave_collection_out(
    norm: np.ndarray, target: np.ndarray, collections: np.ndarray, fit=None
) -> tuple[np.ndarray, dict]:
    """Out-of-collection PDI of every piece, and the weights fitted without each collection."""
    fit = fit or fit_weights
    pdi = np.full(len(target), np.nan)
    weights = {}
    for c in np.unique(collections):
        train = collections != c
        w = fit(norm[train], target[train])
        pdi[~train] = norm[~train] @ w
        weights[c] = w
    return pdi, weights


def metrics(score: np.ndarray, target: np.ndarray, collections: np.ndarray) -> dict:
    within = {c: spearman(score[collections == c], target[collections == c]) for c in np.unique(collections)}
    return {
        "all": spearman(score, target),
        "within_mean": float(np.nanmean(list(within.values()))),
        **{f"within_{c}": v for c, v in within.items()},
    }


def bootstrap(score: np.ndarray, target: np.ndarray, collections: np.ndarray, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    groups = [np.flatnonzero(collections == c) for c in np.unique(collections)]
    alls, withins = [], []
    for _ in range(BOOT):
        idx = np.concatenate([rng.choice(g, len(g)) for g in groups])
        m = metrics(score[idx], target[idx], collections[idx])
        alls.append(m["all"])
        withins.append(m["within_mean"])
    return {"all_ci": np.nanpercentile(alls, [2.5, 97.5]), "within_ci": np.nanpercentile(withins, [2.5, 97.5])}


def old_pdi(analysis: pd.DataFrame) -> np.ndarray:
    """The previous PDI: 13 audio descriptors min–max on the library, family means, 0.5/0.5."""
    from music_pipeline.difficulty.audio_descriptors import DESCRIPTOR_FAMILY, STRUCTURAL

    X = analysis[DESCRIPTOR_NAMES].to_numpy(float)
    n = (X - X.min(0)) / np.where(np.ptp(X, 0) > 0, np.ptp(X, 0), 1)
    s = np.array([DESCRIPTOR_FAMILY[d] == STRUCTURAL for d in DESCRIPTOR_NAMES])
    return 0.5 * n[:, s].mean(1) + 0.5 * n[:, ~s].mean(1)


def quantile_norm(fit: pd.DataFrame, apply: pd.DataFrame, names: list[str]) -> np.ndarray:
    from music_pipeline.difficulty.pdi import QuantileScale

    scale = QuantileScale.fit(fit[names].to_numpy(float), names)
    return scale.transform(apply[names].to_numpy(float))


def evaluate(reference: pd.DataFrame, analyses: dict[str, pd.DataFrame], fit_all: bool) -> None:
    from music_pipeline.difficulty.pdi import fit_model

    base = analyses["base"]
    target = complexity_composite(reference).to_numpy()
    cols = reference["collection"].to_numpy()
    names = NOTE_DESCRIPTOR_NAMES
    norm = quantile_norm(base, base, names)

    print(
        f"\n{len(reference)} pieces in {len(np.unique(cols))} collections: "
        + ", ".join(f"{c} {int((cols == c).sum())}" for c in np.unique(cols))
    )
    rows = []

    def report(name, score, note=""):
        m, ci = metrics(score, target, cols), bootstrap(score, target, cols)
        rows.append(
            {
                "procedure": name,
                **m,
                "all_lo": ci["all_ci"][0],
                "all_hi": ci["all_ci"][1],
                "within_lo": ci["within_ci"][0],
                "within_hi": ci["within_ci"][1],
                "note": note,
            }
        )

    report("PDI as shipped: equal weights, 12 note descriptors", norm.mean(1), "no fitting; scale unsupervised")
    pdi_lco, weights = leave_collection_out(norm, target, cols)
    report("NNLS weights, leave-collection-out", pdi_lco, "fitted without the scored collection")
    report(
        "ρ-proportional weights, leave-collection-out",
        leave_collection_out(norm, target, cols, correlation_weights)[0],
        "fitted without the scored collection",
    )
    anchor = [names.index(n) for n in ("notes_per_s", "mean_polyphony", "pitch_range", "ioi_entropy")]
    report("equal weights, 4 anchor note stats", norm[:, anchor].mean(1), "no fitting")
    report("previous PDI (13 audio descriptors)", old_pdi(base), "no fitting")
    for i, n in enumerate(names):
        report(f"single: {n}", norm[:, i])
    for n in (
        "onset_density",
        "pitch_range_semitones",
        "onset_interval_entropy",
        "tempo_bpm",
        "rms_energy_db",
        "spectral_spread_hz",
    ):
        report(f"single (audio): {n}", base[n].to_numpy(float))
    table = pd.DataFrame(rows)
    pd.set_option("display.width", 250)
    show = table[["procedure", "all", "all_lo", "all_hi", "within_mean", "within_lo", "within_hi"]]
    print(
        "\nSpearman ρ against the symbolic composite (95 % bootstrap CI)\n"
        + show.to_string(index=False, float_format=lambda v: f"{v:.3f}")
    )
    within_cols = [
        c for c in table.columns if c.startswith("within_") and c not in ("within_mean", "within_lo", "within_hi")
    ]
    print(
        "\nwithin each collection\n"
        + table[["procedure", *within_cols]].head(5).to_string(index=False, float_format=lambda v: f"{v:.3f}")
    )
    print("\nNNLS weights fitted without each collection:")
    for c, w in weights.items():
        print(f"  -{c:<13}" + " ".join(f"{n}={v:.2f}" for n, v in zip(names, w, strict=True) if v > 0.005))

    full = fit_weights(norm, target)
    print("\nNNLS weights fitted on all collections (not shipped: held out they rank worse than equal weights):")
    print("  " + ", ".join(f'"{n}": {v:.3f}' for n, v in zip(names, full, strict=True) if v > 0))

    # invariance: the shipped model on the base library, variants scored on its saved scale
    table_base = base.assign(key=reference["piece"], content_hash=reference["piece"])
    model = fit_model(table_base, weights=dict(zip(names, full, strict=True)) if fit_all else None)
    ref_scores = model.score_frame(table_base)
    print(f"\ninvariance (scale and thresholds fitted on the base renders, {model.threshold_rule}):")
    for v, a in analyses.items():
        if v == "base":
            continue
        s = model.score_frame(a.assign(key=reference["piece"], content_hash=reference["piece"]))
        d = np.abs(s["pdi"].to_numpy() - ref_scores["pdi"].to_numpy())
        changed = float(np.mean(s["level"].to_numpy() != ref_scores["level"].to_numpy()))
        print(
            f"  {v:<7} median |ΔPDI| {np.median(d):.4f}  95th pct {np.percentile(d, 95):.4f}  max {d.max():.4f}  level changed {changed:.1%}"
        )
    old = old_pdi(base)
    for v, a in analyses.items():
        if v == "base":
            continue
        X0, X1 = base[DESCRIPTOR_NAMES].to_numpy(float), a[DESCRIPTOR_NAMES].to_numpy(float)
        lo, span = X0.min(0), np.where(np.ptp(X0, 0) > 0, np.ptp(X0, 0), 1)
        n1 = np.clip((X1 - lo) / span, 0, 1)
        from music_pipeline.difficulty.audio_descriptors import DESCRIPTOR_FAMILY, STRUCTURAL

        s = np.array([DESCRIPTOR_FAMILY[d] == STRUCTURAL for d in DESCRIPTOR_NAMES])
        p1 = 0.5 * n1[:, s].mean(1) + 0.5 * n1[:, ~s].mean(1)
        t = np.quantile(old, [1 / 3, 2 / 3])
        changed = np.mean(np.searchsorted(t, old, side="right") != np.searchsorted(t, p1, side="right"))
        print(f"  (previous PDI) {v:<7} median |ΔPDI| {np.median(np.abs(p1 - old)):.4f}  level changed {changed:.1%}")
    cpu = base[["duration_s", "features_cpu_s", "notes_cpu_s"]].sum()
    print(
        f"\ncost on the base renders ({cpu['duration_s'] / 60:.0f} min of audio): track_features {cpu['duration_s'] / cpu['features_cpu_s']:.0f}× real time per core, "
        f"track_notes {cpu['duration_s'] / cpu['notes_cpu_s']:.0f}× (pieces ≤ 120 s, so mostly transcribed whole)"
    )


def speed(files: list[Path], limit: int | None) -> None:
    """× real time per core of the notes pass against the feature pass on the same files."""
    from music_pipeline.features.extract import extract_features, warm_up
    from music_pipeline.notes.store import notes_of_file
    from music_pipeline.notes.transcribe import Transcriber

    files = files[:limit] if limit else files
    warm_up()
    tr = Transcriber(threads=1)
    notes_of_file(files[0], tr)  # session start-up excluded from both
    audio = feat = note = 0.0
    for f in files:
        t0 = time.process_time()
        feats = extract_features(f)
        t1 = time.process_time()
        notes_of_file(f, tr)
        t2 = time.process_time()
        audio += feats.duration_s
        feat += t1 - t0
        note += t2 - t1
    print(
        f"{len(files)} files, {audio / 60:.1f} min: track_features {audio / feat:.0f}× real time per core, "
        f"track_notes {audio / note:.0f}× (notes/features CPU {note / feat:.2f})"
    )


def one_minute_library(source: Path, dest: Path, n: int) -> Path:
    """``n`` one-minute WAV cuts of the real tracks under ``source`` (starting every 50 s of each
    track in turn; the demo's 144 minutes hold 122 disjoint minutes, so neighbouring cuts overlap
    by 10 s); the cuts of one track share a group, so no track is on both sides of a fold."""
    import soundfile as sf

    from music_pipeline.audio.decode import decode

    if (dest / "labels.csv").exists():
        return dest
    files = [f for f in audio_files([], str(source))]
    decoded = {}
    rows, k = [], 0
    while len(rows) < n and k < 20:
        for f in files:
            if len(rows) >= n:
                break
            audio = decoded.setdefault(f, decode(f))
            a, b = k * 50 * audio.sr, (k * 50 + 60) * audio.sr
            if b > len(audio.y):
                continue
            rel = f"{f.parent.name}/{f.stem}_{k}.wav"
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            sf.write(dest / rel, audio.y[a:b], audio.sr, subtype="PCM_16")
            rows.append(f"{rel},{f.parent.name},{f.parent.name}/{f.stem}")
        k += 1
    (dest / "labels.csv").write_text("path,label,group\n" + "\n".join(rows) + "\n")
    return dest


def cnn_cost(source: Path, work: Path, n_tracks: int, workers: int) -> None:
    """A real build of ``n_tracks`` one-minute tracks (step times from Dagster), then the CNN alone
    on growing libraries made of those tracks' segments."""
    import shutil

    from music_pipeline.artifacts import read_parquet
    from music_pipeline.build.runner import run_build
    from music_pipeline.difficulty import cnn
    from music_pipeline.features.extract import FeatureStore
    from music_pipeline.layout import DataLayout
    from music_pipeline.settings import Settings

    library = one_minute_library(source, work / f"minutes{n_tracks}", n_tracks)
    data = work / f"build{n_tracks}"
    shutil.rmtree(data, ignore_errors=True)
    os.environ["DAGSTER_HOME"] = str(data / "dagster_home")
    t0 = time.perf_counter()
    summary = run_build(Settings(data, library, workers), log=print)
    print(
        f"build of {summary.tracks} tracks: {time.perf_counter() - t0:.0f} s wall, failures: {summary.failed_assets or 'none'}"
    )
    steps = step_seconds(summary.run_ids)
    base = steps.get("track_features", float("nan"))
    models = ["difficulty_cnn", "genre_classifier", "genre_comparison", "embedding_map"]
    for k in sorted(steps, key=steps.get, reverse=True):
        print(f"  {k:<22} {steps[k]:7.1f} s   {steps[k] / base:5.2f}× track_features")
    print(
        f"  all model steps        {sum(steps.get(m, 0.0) for m in models):7.1f} s   {sum(steps.get(m, 0.0) for m in models) / base:5.2f}× track_features"
    )
    report = read_json_report(data)
    if report:
        m, b = report["metrics"], report["baselines"]
        print(
            f"CNN on the PDI levels, {report['folds']} grouped folds, {report['n_tracks']} tracks: track accuracy {m['track_accuracy']:.3f} "
            f"(majority {b['majority']['track_accuracy']:.3f}, uniform random {b['uniform_random']['track_accuracy']:.3f}), macro-F1 {m['macro_f1']:.3f}"
        )

    # growth: the same segments tiled into larger libraries (the default budget, one process)
    layout = DataLayout(data)
    scores = read_parquet(layout.difficulty_table_path)
    store = FeatureStore(data)
    base_data = cnn.load_segment_dataset(scores, lambda h: store.load(h).segments)
    rng = np.random.default_rng(0)
    cfg = cnn.CnnConfig()
    print("\nCNN alone on growing libraries (segments of the build, tiled; default budget):")
    for factor in (1, 2, 4, 8, 72):
        tracks = pd.concat(
            [
                base_data.tracks.assign(
                    key=base_data.tracks["key"] + f"#{i}", group=base_data.tracks["group"].astype(str) + f"#{i}"
                )
                for i in range(factor)
            ],
            ignore_index=True,
        )
        tracks.index = range(len(tracks))
        n = len(tracks)
        seg_of = {k: base_data.X[base_data.track == (i % len(base_data.tracks))] for i, k in enumerate(tracks["key"])}
        t0 = time.perf_counter()
        d = cnn.load_segment_dataset(
            tracks.assign(content_hash=tracks["key"]),
            lambda h, seg_of=seg_of: (seg_of[h].astype(np.float32) + rng.normal(0, 0.5, seg_of[h].shape)).astype(
                np.float16
            ),
            max_tracks=cfg.max_tracks,
            seed=0,
        )
        t1 = time.perf_counter()
        if factor == 72:  # 10k tracks: only the subsample is loaded and trained on
            print(
                f"  {n:>6} tracks → {len(d.tracks)} used, {d.X.nbytes / 2**20:.0f} MiB of segments; loading {t1 - t0:.1f} s"
            )
        rep = cnn.run_difficulty_cnn(d, cfg, work / "cnn_growth")
        print(
            f"  {n:>6} tracks ({len(d.tracks)} used): {rep['seconds']:.1f} s, {len(d.y)} segments, epochs run {[f['epochs_run'] for f in rep['per_fold']]}"
        )


def cnn_estimator(data: Path, n_time: int) -> None:
    """The difficulty CNN as a cheap estimator of the PDI on a built library: its out-of-fold
    Spearman ρ with the PDI (grouped folds, from the build's report, beside the baselines) and its
    CPU cost per track against the transcription's, on ``n_time`` of the library's tracks."""
    from music_pipeline.artifacts import read_parquet
    from music_pipeline.audio.decode import decode
    from music_pipeline.difficulty import cnn
    from music_pipeline.features.extract import FeatureStore
    from music_pipeline.layout import DataLayout
    from music_pipeline.notes.transcribe import Transcriber

    report = read_json_report(data)
    oof = pd.DataFrame(report["out_of_fold"])
    layout = DataLayout(data)
    scores = read_parquet(layout.difficulty_table_path).merge(oof, on="key")
    rho_pdi = spearman(scores["expected_level"], scores["pdi"])
    m, b = report["metrics"], report["baselines"]
    print(
        f"CNN vs PDI on {len(scores)} tracks, {report['folds']} folds grouped by {report['grouping']}: "
        f"Spearman(expected level, PDI) {rho_pdi:.3f}; track accuracy {m['track_accuracy']:.3f} "
        f"(majority {b['majority']['track_accuracy']:.3f}, uniform {b['uniform_random']['track_accuracy']:.3f}); "
        f"within one level {m['within_one_accuracy']:.3f}"
    )
    model = cnn.load_keras(layout.difficulty_dir / cnn.MODEL_FILE)
    store = FeatureStore(data)
    rows = scores.head(n_time)
    cnn.predict_track(model, store.load(rows["content_hash"].iloc[0]).segments)  # warm-up (graph tracing)
    t0 = time.process_time()
    for h in rows["content_hash"]:
        cnn.predict_track(model, store.load(h).segments)
    per_cnn = (time.process_time() - t0) / len(rows)
    transcriber = Transcriber(threads=1)
    manifest = read_parquet(layout.manifest_path).set_index("key")
    paths = [str(manifest.loc[k, "path"]) for k in rows["key"]]
    transcriber.transcribe(decode(paths[0]).y)  # warm-up
    t0 = time.process_time()
    for path in paths:
        transcriber.transcribe(decode(path).y)
    per_notes = (time.process_time() - t0) / len(rows)
    print(
        f"CPU per track: CNN {per_cnn * 1000:.0f} ms (stored segments, segment loading included), "
        f"transcription {per_notes * 1000:.0f} ms (decode included): {per_notes / per_cnn:.1f}× cheaper"
    )


def read_json_report(data: Path) -> dict | None:
    import json

    p = data / "models" / "difficulty" / "difficulty_cnn_report.json"
    return json.loads(p.read_text()) if p.exists() else None


def compare_budget(work: Path, budget) -> None:
    """The PDI as shipped from notes of ``budget`` against notes of the shipped budget, on the same
    base renders: each one's ρ with the symbolic composite, the paired difference with a 95 %
    interval (pieces resampled within collections, the same draw for both), and how far the PDI
    itself moves (each on its own unsupervised scale; level = library tertiles)."""
    reference = pd.read_parquet(work / "reference.parquet")
    shipped = analyse_variant(work, reference, "base", 1)
    other = analyse_variant(work, reference, "base", 1, budget)
    target = complexity_composite(reference).to_numpy()
    cols = reference["collection"].to_numpy()
    pdi = {
        name: quantile_norm(a, a, NOTE_DESCRIPTOR_NAMES).mean(1) for name, a in (("shipped", shipped), ("other", other))
    }
    rng = np.random.default_rng(0)
    groups = [np.flatnonzero(cols == c) for c in np.unique(cols)]
    diffs = {"all": [], "within_mean": []}
    for _ in range(BOOT):
        idx = np.concatenate([rng.choice(g, len(g)) for g in groups])
        a, b = (metrics(pdi[k][idx], target[idx], cols[idx]) for k in ("shipped", "other"))
        for key, values in diffs.items():
            values.append(b[key] - a[key])
    m = {k: metrics(v, target, cols) for k, v in pdi.items()}
    print(f"notes budget {budget.tag} against the shipped one, {len(reference)} base renders, PDI as shipped")
    for key, values in diffs.items():
        lo, hi = np.percentile(values, [2.5, 97.5])
        print(
            f"  ρ {key:12s} shipped {m['shipped'][key]:.3f}  {budget.tag} {m['other'][key]:.3f}  "
            f"difference {m['other'][key] - m['shipped'][key]:+.3f} (95 % {lo:+.3f}…{hi:+.3f})"
        )
    levels = {k: np.digitize(v, np.quantile(v, [1 / 3, 2 / 3])) for k, v in pdi.items()}
    print(
        f"  PDI {budget.tag} vs shipped: Spearman {spearman(pdi['other'], pdi['shipped']):.3f}, "
        f"level changed on {np.mean(levels['other'] != levels['shipped']):.0%} of pieces"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", nargs="?", default="rank", choices=["rank", "speed", "cnn", "cnn-estimator", "compare"])
    p.add_argument("--tracks", type=int, default=140)
    p.add_argument("files", nargs="*")
    p.add_argument("--work", type=Path, default=DEFAULT_WORK)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--variants", default=",".join(ref.VARIANTS))
    p.add_argument(
        "--fit",
        action="store_true",
        help="score the invariance with the NNLS weights fitted on all collections instead of the shipped ones",
    )
    p.add_argument("--library", default=None)
    p.add_argument("--limit", type=int, default=None)
    p.add_argument(
        "--notes-budget",
        default=None,
        metavar="TAG",
        help="transcribe with this budget instead of the shipped one, e.g. 30s6x (its analyses are kept apart)",
    )
    args = p.parse_args()
    if args.mode == "speed":
        speed(audio_files(args.files, args.library), args.limit)
        return
    if args.mode == "cnn-estimator":  # --library: a built data directory
        cnn_estimator(Path(args.library), args.limit or 30)
        return
    if args.mode == "cnn":
        cnn_cost(Path(args.library) if args.library else ref_demo(), args.work, args.tracks, args.workers)
        return
    budget = parse_budget(args.notes_budget) if args.notes_budget else None
    if args.mode == "compare":  # after `rank` and `rank --notes-budget TAG` analysed both
        compare_budget(args.work, budget)
        return
    reference, analyses = prepare(args.work, args.workers, args.variants.split(","), budget)
    evaluate(reference, analyses, args.fit)


if __name__ == "__main__":
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    sys.exit(main())
