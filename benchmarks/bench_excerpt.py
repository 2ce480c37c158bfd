"""How much audio the learned embedding needs: the same library with different patch caps, paired.

    python benchmarks/bench_excerpt.py --library DEV --data 20=DIR_A --data 10=DIR_B [--data 5=DIR_C]

Each ``--data CAP=DIR`` is a data directory of the same labelled, grouped library
(``dev_library.py``) analysed with that many musicnn patches per track
(``simulate_outside_check.py --learned-patches CAP --data DIR`` writes one). The first is the
reference. On the same folds and queries for every cap:

- genre: balanced accuracy on unseen groups (3 × StratifiedGroupKFold by group, 3 seeds) of two
  fixed pipelines fitted on the training folds only: logistic regression on the learned embedding,
  and on the 641 hand-crafted dims + the learned embedding (the fused view). Fixed, so the patch
  cap is the only thing that changes (``simulate_outside_check.py`` runs the whole model search);
- similarity: same-group precision@5 (leave-one-out) in the ``learned`` and ``fusion`` spaces.

Each figure beside its paired difference from the reference with a 95 % interval from resampling
groups (1000 ×). The notes budget is measured on the difficulty reference instead
(``bench_difficulty.py --notes-budget``), since only the PDI reads the notes.
"""

from __future__ import annotations

import argparse
import warnings

import common  # noqa: F401  (one BLAS thread per process)
import numpy as np
import pandas as pd

BOOT = 1000
SEEDS = (0, 1, 2)


def load(data: str, labels: pd.DataFrame) -> pd.DataFrame:
    from music_pipeline.artifacts import read_parquet
    from music_pipeline.layout import DataLayout
    from music_pipeline.learned.table import read_learned_table, with_learned

    table = with_learned(read_parquet(DataLayout(data).embeddings_path), read_learned_table(data))
    table = table.drop(columns=[c for c in ("label", "group") if c in table]).merge(
        labels, left_on="relpath", right_on="path"
    )
    return table.sort_values("relpath").reset_index(drop=True)


def genre_correct(X: np.ndarray, y: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """(seeds, tracks): 1/0 whether the track's unseen-group prediction was right."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedGroupKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    out = np.zeros((len(SEEDS), len(y)))
    for s, seed in enumerate(SEEDS):
        for tr, te in StratifiedGroupKFold(3, shuffle=True, random_state=seed).split(X, y, groups):
            model = make_pipeline(StandardScaler(), LogisticRegression(C=0.05, max_iter=2000))
            model.fit(X[tr], y[tr])
            out[s, te] = model.predict(X[te]) == y[te]
    return out


def balanced(correct: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean([correct[:, y == c].mean() for c in np.unique(y)]))


def same_group_hits(vectors: np.ndarray, groups: np.ndarray, k: int = 5) -> np.ndarray:
    """Per query, the share of its k nearest (cosine, itself left out) from its own group."""
    v = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    sims = v @ v.T
    np.fill_diagonal(sims, -np.inf)
    top = np.argsort(-sims, axis=1)[:, :k]
    return (groups[top] == groups[:, None]).mean(axis=1)


def paired_ci(stat, ref: np.ndarray, other: np.ndarray, groups: np.ndarray) -> tuple[float, float]:
    """95 % interval of stat(other) − stat(ref) with whole groups resampled."""
    rng = np.random.default_rng(0)
    members = [np.flatnonzero(groups == g) for g in np.unique(groups)]
    diffs = []
    for _ in range(BOOT):
        idx = np.concatenate([members[i] for i in rng.integers(0, len(members), len(members))])
        diffs.append(stat(other, idx) - stat(ref, idx))
    return float(np.percentile(diffs, 2.5)), float(np.percentile(diffs, 97.5))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--library", required=True, help="the library folder with labels.csv (path,label,group)")
    ap.add_argument("--data", action="append", required=True, metavar="CAP=DIR")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    from music_pipeline.features.embedding import FEATURE_NAMES
    from music_pipeline.search.index import learned_block
    from music_pipeline.search.space import fit_transform

    labels = pd.read_csv(f"{args.library}/labels.csv")
    runs = {cap: load(d, labels) for cap, d in (s.split("=", 1) for s in args.data)}
    ref_cap = next(iter(runs))
    keys = runs[ref_cap]["relpath"].tolist()
    for cap, t in runs.items():
        if t["relpath"].tolist() != keys:
            raise SystemExit(f"--data {cap}: not the same tracks as --data {ref_cap}")
    y = runs[ref_cap]["label"].astype(str).to_numpy()
    groups = runs[ref_cap]["group"].astype(str).to_numpy()

    results: dict[str, dict[str, np.ndarray]] = {}
    for cap, t in runs.items():
        raw, learned = t[FEATURE_NAMES].to_numpy(float), learned_block(t)
        results[cap] = {
            "genre, learned": genre_correct(learned, y, groups),
            "genre, 641 + learned": genre_correct(np.hstack([raw, learned]), y, groups),
            "p@5, learned space": same_group_hits(
                fit_transform("learned", raw, 0, learned).project(raw, learned), groups
            ),
            "p@5, fusion space": same_group_hits(
                fit_transform("fusion", raw, 0, learned).project(raw, learned), groups
            ),
        }

    def stat(name):
        if name.startswith("genre"):
            return lambda values, idx: balanced(values[:, idx], y[idx])
        return lambda values, idx: float(values[idx].mean())

    print(f"{len(y)} tracks, {len(np.unique(groups))} groups, {len(np.unique(y))} labels; reference: {ref_cap} patches")
    print(f"{'figure':22s} " + " ".join(f"{cap + ' patches':>26s}" for cap in runs))
    everything = np.arange(len(y))
    for name in results[ref_cap]:
        cells = []
        for cap in runs:
            value = stat(name)(results[cap][name], everything)
            if cap == ref_cap:
                cells.append(f"{value:26.3f}")
                continue
            diff = value - stat(name)(results[ref_cap][name], everything)
            lo, hi = paired_ci(stat(name), results[ref_cap][name], results[cap][name], groups)
            cells.append(f"{value:.3f} ({diff:+.3f}, {lo:+.3f}…{hi:+.3f})".rjust(26))
        print(f"{name:22s} " + " ".join(cells))
    print("cells: value (difference from the reference, 95 % interval over resampled groups)")


if __name__ == "__main__":
    main()
