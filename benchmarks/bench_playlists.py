"""How well the playlists recover the sources of an unlabelled library (docs/playlists.md).

    python benchmarks/bench_playlists.py --data DIR [--draws 200] [--sources 11] [--per-source 13]
                                          [--min-tracks 6] [--json OUT]

DIR is a built data directory of a labelled, grouped library (benchmarks/dev_library.py: group =
source package); its embeddings and learned tables are read, nothing is written. Each draw takes
``--sources`` sources at random among those with at least ``--min-tracks`` tracks and at most
``--per-source`` random tracks of each (the shape of the outside check: 11 sources, ~138 tracks,
no labels), groups them with each method and scores the groups against the sources by adjusted
mutual information (AMI). Printed per method: mean AMI, a 95 % bootstrap interval of that mean
over draws, the 5th–95th percentile of single draws, and the mean k.

Methods: the baseline (plain k-means on the standardised learned embedding, k chosen by
silhouette, and with the true number of sources given — an oracle no library offers), then the
playlists' space (PCA of the fusion of the learned embedding and the 641 hand-crafted dims) with
every clustering × k rule (and the true k), the learned embedding alone with Ward, and the chosen
method with other shares of variance for its k rule (is 0.5 on a plateau or a peak?), and the
deployed design (the chosen method with its misfits listed apart, scored on the tracks it placed).
"""

from __future__ import annotations

import argparse
import json
import time

import common  # noqa: F401  (one BLAS thread per process)
import numpy as np


def load(data: str):
    from music_pipeline.artifacts import read_parquet
    from music_pipeline.features.embedding import FEATURE_NAMES
    from music_pipeline.layout import DataLayout
    from music_pipeline.learned.store import LEARNED_NAMES
    from music_pipeline.learned.table import read_learned_table, with_learned

    df = with_learned(read_parquet(DataLayout(data).embeddings_path), read_learned_table(data))
    df = df[np.isfinite(df[LEARNED_NAMES].to_numpy(dtype=np.float64)).all(axis=1)].reset_index(drop=True)
    return (
        df["group"].astype(str).to_numpy(),
        df[LEARNED_NAMES].to_numpy(dtype=np.float64),
        df[FEATURE_NAMES].to_numpy(dtype=np.float64),
    )


def draws(groups: np.ndarray, n: int, sources: int, per_source: int, min_tracks: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    names, counts = np.unique(groups, return_counts=True)
    eligible = names[counts >= min_tracks]
    if len(eligible) < sources:
        raise SystemExit(f"only {len(eligible)} sources have {min_tracks}+ tracks; need {sources}")
    for _ in range(n):
        chosen = rng.choice(eligible, sources, replace=False)
        rows = [rng.permutation(np.flatnonzero(groups == g))[:per_source] for g in chosen]
        yield np.sort(np.concatenate(rows))


def plain_kmeans(x: np.ndarray, k: int | None, seed: int = 0) -> tuple[np.ndarray, int]:
    """The baseline: k-means on the standardised embedding, no PCA, no normalisation."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score

    from music_pipeline.playlists.clusters import k_range

    std = x.std(axis=0)
    z = (x - x.mean(axis=0)) / np.where(std > 1e-12, std, 1.0)
    if k is None:
        fits = {kk: KMeans(kk, n_init=10, random_state=seed).fit_predict(z) for kk in k_range(len(z))}
        k = max(fits, key=lambda kk: silhouette_score(z, fits[kk]))
        return fits[k], k
    return KMeans(k, n_init=10, random_state=seed).fit_predict(z), k


def summarise(values: list[float], ks: list[int], resamples: int = 2000, seed: int = 0) -> dict:
    v = np.asarray(values)
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, len(v), (resamples, len(v)))].mean(axis=1)
    return {
        "ami_mean": float(v.mean()),
        "ami_mean_ci95": [float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))],
        "ami_p05_p95": [float(np.quantile(v, 0.05)), float(np.quantile(v, 0.95))],
        "share_at_least_0.45": float((v >= 0.45).mean()),
        "k_mean": float(np.mean(ks)),
        "draws": len(v),
    }


def main() -> None:
    from sklearn.metrics import adjusted_mutual_info_score as ami

    from music_pipeline.playlists.clusters import K_RULES, METHODS, VARIANCE_EXPLAINED, cluster

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--draws", type=int, default=200)
    ap.add_argument("--sources", type=int, default=11)
    ap.add_argument("--per-source", type=int, default=13)
    ap.add_argument("--min-tracks", type=int, default=6)
    ap.add_argument("--variance", type=float, default=0.9, help="PCA keeps this share of the variance")
    ap.add_argument("--json")
    args = ap.parse_args()
    groups, learned, hand = load(args.data)
    print(
        f"{len(groups)} tracks, {len(set(groups))} sources; {args.draws} draws of {args.sources} sources × ≤ {args.per_source}"
    )

    methods = {
        "baseline: k-means, learned, k by silhouette": lambda rows: plain_kmeans(learned[rows], None),
        "oracle: k-means, learned, k = true sources": lambda rows: plain_kmeans(learned[rows], args.sources),
    }
    spaces = {
        "learned": lambda rows: [learned[rows]],
        "fusion": lambda rows: [learned[rows], hand[rows]],
    }
    for space, blocks in spaces.items():
        for method in METHODS:
            for rule in [*K_RULES, None]:
                if space == "learned" and method != "ward":
                    continue
                methods[f"{space}, {method}, k {rule or '= true sources'}"] = lambda rows, b=blocks, m=method, r=rule: (
                    _run(cluster(b(rows), m, r or "variance", k=None if r else args.sources, variance=args.variance))
                )
    methods["deployed: fusion, ward, k variance, misfits apart"] = lambda rows: _deployed(
        [learned[rows], hand[rows]], args.variance
    )
    for share in THRESHOLDS:  # the chosen method, other shares of variance for the k rule
        if share != VARIANCE_EXPLAINED:
            methods[f"fusion, ward, k variance {share:.2f}"] = lambda rows, v=share: _at_share(
                [learned[rows], hand[rows]], v, args.variance
            )
    results: dict[str, dict] = {name: {"ami": [], "k": []} for name in methods}
    sizes = []
    t0 = time.perf_counter()
    for rows in draws(groups, args.draws, args.sources, args.per_source, args.min_tracks):
        sizes.append(len(rows))
        for name, fn in methods.items():
            labels, k = fn(rows)
            covered = labels >= 0  # misfits (-1) join no playlist: scored on the tracks in playlists
            results[name]["ami"].append(ami(groups[rows][covered], labels[covered]))
            results[name]["k"].append(k)
    print(
        f"tracks per draw {np.mean(sizes):.0f} (min {min(sizes)}, max {max(sizes)}); {time.perf_counter() - t0:.0f} s"
    )
    out = {}
    for name, r in results.items():
        s = out[name] = summarise(r["ami"], r["k"])
        lo, hi = s["ami_mean_ci95"]
        p5, p95 = s["ami_p05_p95"]
        print(
            f"{name:48s} AMI {s['ami_mean']:.3f} [{lo:.3f}, {hi:.3f}]  draws p5–p95 {p5:.2f}–{p95:.2f}  "
            f"≥0.45 {s['share_at_least_0.45']:.0%}  k {s['k_mean']:.1f}"
        )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"args": vars(args), "tracks_per_draw": float(np.mean(sizes)), "results": out}, fh, indent=1)


def _deployed(blocks, variance: float) -> tuple[np.ndarray, int]:
    from music_pipeline.playlists.clusters import cluster, misfits

    c = cluster(blocks, "ward", "variance", variance=variance)
    return np.where(misfits(c.space.vectors, c.labels), -1, c.labels), c.k


def _run(c) -> tuple[np.ndarray, int]:
    return c.labels, c.k


THRESHOLDS = (0.4, 0.45, 0.5, 0.55, 0.6, 0.7)


def _at_share(blocks, share: float, variance: float) -> tuple[np.ndarray, int]:
    from music_pipeline.playlists import clusters

    v = clusters.playlist_space(blocks, variance).vectors
    for k in clusters.k_range(len(v)):
        labels = clusters.cluster(blocks, "ward", k=k, variance=variance).labels
        if clusters.explained_variance(v, labels) >= share:
            break
    return labels, k


if __name__ == "__main__":
    main()
