"""What the genre classifier's training budget costs in accuracy on unseen sources.

    python benchmarks/bench_budget.py --library DIR --data DIR [--shares 0.25,0.5,1] [--seeds 0,1,2]

``rebuild_models`` stays inside its time budget at 10k tracks because the genre classifier and the
comparison train on at most ``max_tracks`` labelled tracks (a seeded subsample, each label's share
kept; ``genre/data.within_budget``). A library of 10,000 labelled tracks trains on 2,000 of
them, a share of 0.2. This measures what such a share costs where it can be measured honestly: on a
real labelled, grouped library (e.g. ``benchmarks/dev_library.py``; never the reserved material),
3 folds by group × seeds, the classifier trained exactly as the asset trains it (default search,
``train_genre_classifier``) on a budget of ``share × training tracks``, and scored on the held-out
groups' tracks with the deployed model. Every share sees the same folds, so the differences are
paired; their 95 % CI is a bootstrap over folds. The baseline beside them: the majority label.
Small libraries make this pessimistic: 25 % of 130 training tracks is 32, of 10,000 it is 2,500.
"""

from __future__ import annotations

import argparse
import time
import warnings

import common  # noqa: F401  (one BLAS thread per process)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--library", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--shares", default="0.25,0.5,1")
    ap.add_argument("--seeds", default="0,1,2")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    import numpy as np
    from simulate_outside_check import analyse, grouped_folds, majority_score

    from music_pipeline.artifacts import read_parquet
    from music_pipeline.genre.cv import SearchConfig, balanced_accuracy
    from music_pipeline.genre.data import inputs_of, labelled_data
    from music_pipeline.genre.training import train_genre_classifier
    from music_pipeline.layout import DataLayout
    from music_pipeline.learned.table import read_learned_table, with_learned

    analyse(args.library, args.data)
    table = with_learned(read_parquet(DataLayout(args.data).embeddings_path), read_learned_table(args.data))
    everything = labelled_data(table)
    shares = [float(s) for s in args.shares.split(",")]
    scores: dict[float, list[float]] = {s: [] for s in shares}
    seconds: dict[float, list[float]] = {s: [] for s in shares}
    majority = []
    print(f"{everything.n} labelled tracks, {len(set(everything.groups))} groups, labels {everything.classes}")
    for seed, k, train, test, _ in grouped_folds(table, everything, (int(s) for s in args.seeds.split(","))):
        y_test = test["label"].astype(str).to_numpy()
        line = []
        for share in shares:
            budget = max(8, round(share * len(train))) if share < 1 else 0
            t0 = time.perf_counter()
            r = train_genre_classifier(train, SearchConfig(max_tracks=budget, seed=seed))
            seconds[share].append(time.perf_counter() - t0)
            pred = r.deployed.predict(inputs_of(test)).astype(str)
            classes = sorted(set(y_test) | set(r.deployed.classes))
            scores[share].append(balanced_accuracy(np.searchsorted(classes, y_test), np.searchsorted(classes, pred)))
            line.append(f"{share:g}×{len(train)}={r.data.n}: {scores[share][-1]:.3f} ({r.deployed.candidate.name})")
        majority.append(majority_score(train, y_test))
        print(f"seed {seed} fold {k}: " + " | ".join(line), flush=True)

    rng = np.random.default_rng(0)
    full = np.array(scores[max(shares)])
    print(
        "\nshare of the training tracks | balanced accuracy on unseen groups (mean, SD over folds) | minus the full set (95 % CI) | training time"
    )
    for share in shares:
        s = np.array(scores[share])
        d = s - full
        boot = [d[rng.integers(0, len(d), len(d))].mean() for _ in range(2000)]
        lo, hi = np.percentile(boot, [2.5, 97.5])
        print(
            f"{share:>6g} | {s.mean():.3f} ({s.std():.3f}) | {d.mean():+.3f} ({lo:+.3f} to {hi:+.3f}) | {np.mean(seconds[share]):.0f} s"
        )
    print(f"majority label: {np.mean(majority):.3f}")


if __name__ == "__main__":
    main()
