"""How smooth is the explorer's path from A to B? Measured on a built library, against baselines.

Run by hand:  python benchmarks/path_quality.py --data DIR [--length 8] [--pairs 300]

For random pairs of tracks A, B with different labels (all such pairs when there are fewer than
``--pairs``), each method makes ``length`` tracks between them; the playlist is A, the tracks, B.
Per playlist, in the similarity space (cosine of index vectors):

- ``worst step``: 1 − the lowest cosine between consecutive tracks (the biggest jump you hear);
- ``mean step``: 1 − the mean cosine between consecutive tracks;
- ``forward``: Spearman correlation of position with lean towards B, cos(c, B) − cos(c, A)
  (1 = every step moves on towards B);

averaged over pairs, with a 95 % bootstrap interval over pairs. Methods: the explorer's
``Discovery.path`` (smooth 0.3, ordered by progress) and its variants (smooth 0 / 0.5; no
reordering), and baselines: random tracks in random order, random tracks ordered by progress,
and the direct jump A → B (no tracks between).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from music_pipeline.search.discovery import Discovery
from music_pipeline.search.path import path_walk, progress


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    rx, ry = np.argsort(np.argsort(x)), np.argsort(np.argsort(y))
    return float(np.corrcoef(rx, ry)[0, 1]) if np.std(ry) > 0 else 0.0


def scores(V: np.ndarray, a: int, b: int, inner: list[int]) -> tuple[float, float, float]:
    seq = [a, *inner, b]
    steps = np.einsum("ij,ij->i", V[seq[:-1]], V[seq[1:]])
    lean = V[inner] @ V[b] - V[inner] @ V[a] if inner else np.array([])
    fwd = spearman(np.arange(len(inner)), lean) if len(inner) > 1 else 1.0
    return 1 - float(steps.min()), 1 - float(steps.mean()), fwd


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--length", type=int, default=8)
    ap.add_argument("--pairs", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    disc = Discovery.open(args.data)
    V = np.asarray(disc.index.index.vectors, dtype=np.float64)
    labels = disc.index.tracks["label"].tolist()
    n, L = len(V), args.length
    rng = np.random.default_rng(args.seed)
    pairs = [(a, b) for a in range(n) for b in range(n) if a != b and labels[a] != labels[b]]
    if len(pairs) > args.pairs:
        pairs = [pairs[i] for i in rng.choice(len(pairs), args.pairs, replace=False)]

    def neighbours(vec, k):
        return disc.index.index.search(vec.astype(np.float32), k)[0][0]

    def ours(smooth, by_progress=True):
        def make(a, b):
            return path_walk(
                disc.index.index.vectors, V[a], V[b], L, [a, b], neighbours, smooth, by_progress=by_progress
            )[0].tolist()

        return make

    def random_tracks(ordered):
        def make(a, b):
            pool = [i for i in range(n) if i not in (a, b)]
            pick = rng.choice(pool, min(L, len(pool)), replace=False)
            if ordered:
                pick = pick[np.argsort(progress(V[pick], V[a], V[b]), kind="stable")]
            return pick.tolist()

        return make

    methods = {
        "path (smooth 0.3, by progress) — the explorer": ours(0.3),
        "path, smooth 0": ours(0.0),
        "path, smooth 0.5": ours(0.5),
        "path, smooth 0.3, pick order (no reordering)": ours(0.3, by_progress=False),
        "random tracks, ordered by progress": random_tracks(True),
        "random tracks, random order": random_tracks(False),
        "direct jump A → B": lambda a, b: [],
    }
    print(f"{n} tracks, {len(pairs)} pairs with different labels, {L} tracks between A and B\n")
    print("| method | worst step (1 − cos) | mean step (1 − cos) | forward (Spearman) |")
    print("|---|---:|---:|---:|")
    for name, make in methods.items():
        rows = np.array([scores(V, a, b, make(a, b)) for a, b in pairs])
        cells = []
        for j in range(3):
            boot = [rows[rng.integers(0, len(rows), len(rows)), j].mean() for _ in range(1000)]
            cells.append(f"{rows[:, j].mean():.3f} [{np.percentile(boot, 2.5):.3f}, {np.percentile(boot, 97.5):.3f}]")
        print(f"| {name} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
