"""Simulate the project's outside check on a labelled, grouped library (e.g. benchmarks/dev_library.py).

    python benchmarks/simulate_outside_check.py --library DIR --data DIR [--seeds 0,1,2] [--drop LABEL,...]

1. Analyses the library with the core (hand-crafted features, learned embedding; cached by content
   hash in --data, so a second run only re-scores).
2. For each seed, 3 folds by group (StratifiedGroupKFold): trains the genre classifier on the train
   groups exactly as the genre_classifier asset does (``train_genre_classifier``, default search),
   reads the estimate its model card would show, classifies the unseen groups' tracks with the
   deployed model and compares. Baselines on the same folds: the same procedure restricted to the
   641 hand-crafted dims, and the majority label.
3. Same-group precision@5 of the similarity index built on the whole library (the space it would
   choose, and the 641-dim standardised space), over all tracks and over 40 random queries as
   `similar TRACK -n 5` would answer them.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import common  # noqa: F401  (one BLAS thread per process)


def analyse(library: str, data: str, learned_patches: int | None = None) -> None:
    from music_pipeline.artifacts import read_parquet, write_parquet
    from music_pipeline.audio.scan import scan_library
    from music_pipeline.features.extract import ExtractJob, FeatureStore, extract_many
    from music_pipeline.features.tables import refresh_tables
    from music_pipeline.layout import DataLayout
    from music_pipeline.learned.store import LearnedJob, LearnedStore, embed_many
    from music_pipeline.learned.table import build_learned_table

    layout = DataLayout(data)
    scan = scan_library(library, layout.hash_cache_path)
    extract_many([ExtractJob(t.key, t.path, t.relpath, t.content_hash, str(data)) for t in scan.tracks], workers=2)
    refresh_tables(scan, FeatureStore(data), layout)
    store = LearnedStore(data, learned_patches) if learned_patches else LearnedStore(data)
    embed_many([LearnedJob(t.key, t.path, t.relpath, t.content_hash, t.scan_error) for t in scan.tracks], store)
    table, _ = build_learned_table(
        read_parquet(layout.embeddings_path, columns=["key", "relpath", "content_hash"]), store
    )
    write_parquet(DataLayout(data).learned_table_path, table)


def grouped_folds(table, everything, seeds):
    """3 folds by group per seed (StratifiedGroupKFold): (seed, fold, train table, test table,
    test rows of ``everything``)."""
    from sklearn.model_selection import StratifiedGroupKFold

    for seed in seeds:
        folds = StratifiedGroupKFold(3, shuffle=True, random_state=seed).split(
            everything.X, everything.y, everything.groups
        )
        for k, (tr, te) in enumerate(folds):
            train = table[table["key"].isin(set(everything.keys[tr]))].reset_index(drop=True)
            test = table[table["key"].isin(set(everything.keys[te]))].reset_index(drop=True)
            yield seed, k, train, test, te


def majority_score(train, y_test) -> float:
    """Balanced accuracy of predicting the training set's majority label for every test track."""
    import numpy as np

    top = train["label"].value_counts().idxmax()
    return float(np.mean([np.mean(y_test[y_test == c] == top) for c in np.unique(y_test)]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--library", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--drop", default="", help="labels to leave out")
    ap.add_argument("--out", default=None, help="write every fold's record as JSON here")
    ap.add_argument(
        "--learned-patches",
        type=int,
        default=None,
        help="musicnn patches per track (default: the shipped cap); use a --data of its own per value",
    )
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    import numpy as np

    from music_pipeline.artifacts import read_parquet
    from music_pipeline.features.embedding import FEATURE_NAMES
    from music_pipeline.genre.candidates import Candidate
    from music_pipeline.genre.cv import SearchConfig, balanced_accuracy
    from music_pipeline.genre.data import inputs_of, labelled_data
    from music_pipeline.genre.report import model_card
    from music_pipeline.genre.training import train_genre_classifier
    from music_pipeline.layout import DataLayout
    from music_pipeline.learned.table import read_learned_table, with_learned
    from music_pipeline.search.index import TrackIndex, learned_block
    from music_pipeline.search.space import fit_transform, precision_at_k, precision_ci

    analyse(args.library, args.data, args.learned_patches)
    table = with_learned(read_parquet(DataLayout(args.data).embeddings_path), read_learned_table(args.data))
    drop = {d for d in args.drop.split(",") if d}
    table = table[~table["label"].isin(drop)].reset_index(drop=True)
    everything = labelled_data(table)
    handcrafted = SearchConfig(
        candidates=(
            Candidate("logreg", "full", C=0.05),
            Candidate("logreg", "level_invariant", C=0.05),
            Candidate("knn", "full", k=7),
            Candidate("svm", "full", C=1.0),
        )
    )
    records = []
    for seed, k, train, test, te in grouped_folds(table, everything, (int(s) for s in args.seeds.split(","))):
        y_test = test["label"].astype(str).to_numpy()
        rec = {"seed": seed, "fold": k, "test_groups": sorted(set(everything.groups[te]))}
        for name, cfg in (("deployed", SearchConfig()), ("handcrafted_only", handcrafted)):
            t0 = time.time()
            r = train_genre_classifier(train, cfg)
            card = model_card(r.report, "simulated", time.time())
            pred = r.deployed.predict(inputs_of(test)).astype(str)
            classes = sorted(set(y_test) | set(r.deployed.classes))
            rec[name] = {
                "model": r.deployed.candidate.name,
                "estimate": card["estimate"]["balanced_accuracy"],
                "ci95": card["estimate"]["ci95"],
                "before_step": card["estimate"]["before_learning_curve_step"],
                "unseen": balanced_accuracy(np.searchsorted(classes, y_test), np.searchsorted(classes, pred)),
                "seconds": round(time.time() - t0, 1),
            }
        rec["majority"] = majority_score(train, y_test)
        records.append(rec)
        d, h = rec["deployed"], rec["handcrafted_only"]
        print(
            f"seed {seed} fold {k}: deployed {d['model']}: estimate {d['estimate']:.3f} (95 % CI {d['ci95'][0]:.2f}–{d['ci95'][1]:.2f}; "
            f"before the learning-curve step {d['before_step']:.3f}) unseen {d['unseen']:.3f} | 641 dims: {h['model']} estimate "
            f"{h['estimate']:.3f} unseen {h['unseen']:.3f} | majority {rec['majority']:.3f}",
            flush=True,
        )
    for name in ("deployed", "handcrafted_only"):
        est = np.array([r[name]["estimate"] for r in records])
        out = np.array([r[name]["unseen"] for r in records])
        cover = np.mean([r[name]["ci95"][0] <= r[name]["unseen"] <= r[name]["ci95"][1] for r in records])
        print(
            f"{name}: mean balanced accuracy on unseen groups {out.mean():.3f} (SD over folds {out.std():.3f}); mean estimate {est.mean():.3f}; "
            f"|estimate − unseen| mean {np.abs(est - out).mean():.3f}; within ±0.10 on {int((np.abs(est - out) <= 0.10).sum())}/{len(out)} folds; "
            f"CI covers the fold's score on {cover:.0%}"
        )
    print(f"majority: {np.mean([r['majority'] for r in records]):.3f}")

    index = TrackIndex.build(table)
    raw, learned = table[FEATURE_NAMES].to_numpy(float), learned_block(table)
    groups = np.array(
        [g if isinstance(g, str) and g else k for g, k in zip(table["group"], table["key"], strict=True)], dtype=object
    )
    queries = np.sort(np.random.default_rng(0).choice(len(table), min(40, len(table)), replace=False))
    print(f"similarity index: chosen space {index.transform.kind}; scores {index.info['selection']['scores_by_basis']}")
    for kind in dict.fromkeys([index.transform.kind, "standardised"]):
        v = fit_transform(kind, raw, 0, learned).project(raw, learned)
        res = precision_at_k(v, groups, 5, per_query=True)
        sims = v[queries] @ v.T
        sims[np.arange(len(queries)), queries] = -np.inf
        top = np.argsort(-sims, axis=1)[:, :5]
        ci = precision_ci(res, groups)
        print(
            f"  {kind}: same-group precision@5 {res['precision']:.3f} (95 % CI {ci[0]:.2f}–{ci[1]:.2f}, {res['queries']} queries; random "
            f"{res['baseline']:.3f}); over 40 random queries {np.mean(groups[top] == groups[queries][:, None]):.3f}"
        )
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(records, fh, indent=1)


if __name__ == "__main__":
    main()
