"""The recommender on simulated listeners: recall@10 of popularity, content-only, CF-only and the
hybrid for warm tracks, cold tracks and cold listeners (95 % bootstrap CIs over listeners), and a
mimic of the outside check (AUCs of one listener's sources).

    python benchmarks/bench_listening.py --data DATA [--seeds 5] [--out benchmarks/listening_results.json]
    python benchmarks/bench_listening.py --synthetic           # clusters instead of a library

``--data``: a data directory with the embeddings table (and the learned embedding): the content
vectors are the similarity index's (its own index when built, else one fitted here in memory the
way the ``similarity_index`` asset fits it); the sources and styles of the simulated tastes are
the tracks' groups and labels. Nothing is written to DATA. What a simulation can and cannot show:
docs/listening.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import common  # noqa: F401  (one BLAS thread per process; the repository on the import path)
import numpy as np

from music_pipeline.listening import recommender as rec
from music_pipeline.listening import simulate as sim

METHODS = {
    "popularity": ("popularity_only",),
    "content": ("content",),
    "cf": ("cf",),
    "hybrid": ("cf", "content", "popularity"),
}
K = 10


def library_from_data(data_dir: str):
    from music_pipeline.artifacts import read_parquet
    from music_pipeline.layout import DataLayout
    from music_pipeline.search.index import IndexNotBuilt, TrackIndex

    layout = DataLayout(data_dir)
    emb = read_parquet(layout.embeddings_path)
    try:
        index = TrackIndex.load(layout.similarity_dir, mmap=False)
        how = "the data directory's similarity index"
    except (IndexNotBuilt, OSError, ValueError):
        from music_pipeline.learned.table import read_learned_table, with_learned

        index = TrackIndex.build(with_learned(emb, read_learned_table(data_dir)))
        how = "an index fitted here as the similarity_index asset fits it"
    t = index.tracks
    dur = dict(zip(emb["key"], emb["duration_s"], strict=True))
    keys = t["key"].astype(str).to_numpy()
    groups = t["group"].fillna("?").astype(str).to_numpy()
    styles = t["label"].fillna("?").astype(str).to_numpy()
    vectors = np.asarray(index.index.vectors, dtype=np.float64)
    print(
        f"{len(keys)} tracks, {len(set(groups))} sources, {len(set(styles))} styles; content: {how} ({index.transform.kind}, {vectors.shape[1]} dims)"
    )
    return keys, groups, styles, np.array([dur.get(k, 180.0) for k in keys]), vectors, index.transform.kind


def synthetic_library(seed=0, n_src=25, per=8, dim=64, spread=4.0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(n_src, dim))
    style_centers = rng.normal(size=(5, dim))
    src = np.repeat(np.arange(n_src), per)
    sty = src % 5
    v = centers[src] + style_centers[sty] + spread * rng.normal(size=(len(src), dim))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    keys = np.array([f"t{i:04d}" for i in range(len(src))])
    return keys, src.astype(str), sty.astype(str), np.full(len(src), 180.0), v, "synthetic"


# -- scoring one listener with one method -------------------------------------------------------
def scores_for(model, inter, user, keys, vectors, method):
    parts = METHODS[method]
    if parts == ("popularity_only",):
        return rec.score_tracks(None, inter, user, keys, vectors, parts=()).score
    return rec.score_tracks(model, inter, user, keys, vectors, parts=parts).score


def recall_at_k(score, held, candidates, k=K):
    rows = np.flatnonzero(candidates & np.isfinite(score))
    order = rows[np.lexsort((rows, -score[rows]))][:k]
    return len(set(order) & set(held)) / min(k, len(held))


def bootstrap_ci(values, resamples=1000, seed=0):
    v = np.asarray(values, dtype=np.float64)
    if not len(v):
        return [None, None]
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, len(v), (resamples, len(v)))].mean(axis=1)
    return [float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))]


# -- the population experiments ------------------------------------------------------------------
def population_runs(lib, seeds, params, n_users=60):
    keys, groups, styles, durations, vectors, _ = lib
    dur = dict(zip(keys, durations, strict=True))
    pos_of = {k: i for i, k in enumerate(keys)}
    per = {s: {m: [] for m in METHODS} for s in ("warm", "cold_tracks", "cold_listeners")}
    for seed in seeds:
        rng = np.random.default_rng(1000 + seed)
        events, _truth = sim.population(keys, groups, styles, durations, n_users=n_users, seed=seed)
        events = events.reset_index(drop=True)
        inter_all = rec.interactions(events, dur, params)
        positives = inter_all[inter_all["value"] > 0]

        # warm: 20 % of each listener's positive tracks held out (listeners with ≥ 5)
        held = {}
        for u, g in positives.groupby("user"):
            if len(g) >= 5:
                h = rng.choice(g["track"].to_numpy(), max(1, len(g) // 5), replace=False)
                held[u] = set(h)
        drop = np.array([t in held.get(u, ()) for u, t in zip(events["user"], events["track"], strict=True)])
        _evaluate(per["warm"], events[~drop], held, keys, vectors, dur, params, pos_of, None)

        # cold tracks: 20 % of the tracks never heard in training; ranked among themselves
        cold = set(rng.choice(keys, len(keys) // 5, replace=False))
        train = events[~events["track"].isin(cold)]
        held = {u: set(g["track"]) & cold for u, g in positives.groupby("user")}
        held = {u: h for u, h in held.items() if h}
        only = np.isin(keys, list(cold))
        _evaluate(per["cold_tracks"], train, held, keys, vectors, dur, params, pos_of, only)

        # cold listeners: a quarter of the listeners with ≥ 8 positive tracks keep their first 3 events
        cands = [u for u, g in positives.groupby("user") if len(g) >= 8]
        chosen = set(rng.choice(cands, max(1, len(cands) // 4), replace=False)) if cands else set()
        keep = events.sort_values("ts").groupby("user").cumcount() < 3
        train = events[~events["user"].isin(chosen) | keep]
        seen = train.groupby("user")["track"].agg(set).to_dict()
        held = {u: set(g["track"]) - seen.get(u, set()) for u, g in positives.groupby("user") if u in chosen}
        held = {u: h for u, h in held.items() if h}
        _evaluate(per["cold_listeners"], train, held, keys, vectors, dur, params, pos_of, None)
    return {
        s: {
            m: {"recall_at_10": float(np.mean(v)) if v else None, "ci95": bootstrap_ci(v), "listeners": len(v)}
            for m, v in by.items()
        }
        for s, by in per.items()
    }


def _evaluate(out, train_events, held, keys, vectors, dur, params, pos_of, only):
    inter = rec.interactions(train_events, dur, params)
    model = rec.ListeningModel.fit(inter, keys, vectors, params)
    for u, tracks in held.items():
        h = [pos_of[t] for t in tracks]
        for m in METHODS:
            score = scores_for(model, inter, u, keys, vectors, m)
            cand = np.isfinite(score) if only is None else np.isfinite(score) & only
            out[m].append(recall_at_k(score, h, cand))


# -- the outside check, mimicked -----------------------------------------------------------------
def check_runs(lib, seeds, params, n_sources=10, new_share=0.2):
    keys, groups, _styles, durations, vectors, _ = lib
    dur = dict(zip(keys, durations, strict=True))
    rows = []
    names = np.unique(groups)
    for seed in seeds:
        rng = np.random.default_rng(seed)
        srcs = rng.choice(names, min(n_sources, len(names)), replace=False)
        in_lib = np.isin(groups, srcs)
        new = np.zeros(len(keys), dtype=bool)
        for s in srcs:
            members = np.flatnonzero(groups == s)
            new[rng.choice(members, max(1, round(new_share * len(members))), replace=False)] = True
        old = in_lib & ~new
        events, roles = sim.check_scenario(keys[old], groups[old], durations[old], seed=seed)
        inter = rec.interactions(events, dur, params)
        k_old, v_old, g_old = keys[old], vectors[old], groups[old]
        model = rec.ListeningModel.fit(inter, k_old, v_old, params)
        row = {"seed": seed}
        for m in METHODS:
            s = scores_for(model, inter, "her", k_old, v_old, m)
            cand = np.isfinite(s)
            row[f"warm_auc_{m}"] = sim.auc(s[cand], np.isin(g_old, roles["her_sources"])[cand])
        # new tracks of the same sources, built after the model was trained, never played
        k_all, v_all, g_all = keys[in_lib], vectors[in_lib], groups[in_lib]
        is_new = new[in_lib]
        mine = np.isin(g_all, roles["her_sources"])
        for m in METHODS:
            s = scores_for(model, inter, "her", k_all, v_all, m)
            row[f"new_auc_{m}"] = sim.auc(s[is_new], mine[is_new])
            if m == "hybrid":
                best = np.flatnonzero(np.isfinite(s))
                best = best[np.lexsort((best, -s[best]))][:20]
                row["new_in_top20"] = float(np.isin(np.flatnonzero(is_new & mine), best).mean())
        sc = rec.score_tracks(model, inter, "her", k_all, v_all)
        liked = v_all[sc.positives].mean(axis=0)
        row["new_auc_cosine_to_liked"] = sim.auc((v_all @ liked)[is_new], mine[is_new])
        rows.append(row)
    keys_ = [k for k in rows[0] if k != "seed"]
    return {
        "runs": len(rows),
        "mean": {k: float(np.nanmean([r[k] for r in rows])) for k in keys_},
        "min": {k: float(np.nanmin([r[k] for r in rows])) for k in keys_},
        "ci95": {k: bootstrap_ci([r[k] for r in rows]) for k in keys_},
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", help="a data directory with the embeddings table (read only)")
    ap.add_argument("--synthetic", action="store_true", help="synthetic clusters instead of a library")
    ap.add_argument("--seeds", type=int, default=5, help="simulated populations (default 5)")
    ap.add_argument("--check-seeds", type=int, default=20, help="runs of the check mimic (default 20)")
    ap.add_argument("--users", type=int, default=60)
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="a recommender parameter")
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    args = ap.parse_args()
    if not args.data and not args.synthetic:
        ap.error("give --data DIR or --synthetic")
    params = rec.Params()
    for item in args.set:
        name, value = item.split("=", 1)
        params = replace(params, **{name: type(getattr(params, name))(value)})
    lib = synthetic_library() if args.synthetic else library_from_data(args.data)
    t0 = time.perf_counter()
    pop = population_runs(lib, range(args.seeds), params, args.users)
    check = check_runs(lib, range(args.check_seeds), params)
    seconds = time.perf_counter() - t0
    print(f"\nrecall@{K} on simulated listeners ({args.seeds} populations of {args.users}; 95 % CI over listeners):")
    print(f"{'split':16}" + "".join(f"{m:>24}" for m in METHODS))
    for split, by in pop.items():
        cells = [
            f"{r['recall_at_10']:.3f} [{r['ci95'][0]:.2f},{r['ci95'][1]:.2f}]" if r["recall_at_10"] is not None else "-"
            for r in by.values()
        ]
        print(f"{split:16}" + "".join(f"{c:>24}" for c in cells) + f"   (n={next(iter(by.values()))['listeners']})")
    print(f"\nthe check, mimicked ({check['runs']} runs): mean [min]")
    for k, v in check["mean"].items():
        print(f"  {k:32} {v:.3f}  [{check['min'][k]:.3f}]  CI {check['ci95'][k][0]:.3f}–{check['ci95'][k][1]:.3f}")
    print(f"\n{seconds:.0f} s")
    if args.out:
        Path(args.out).write_text(
            json.dumps(
                {
                    "library": "synthetic" if args.synthetic else args.data,
                    "space": lib[5],
                    "params": asdict(params),
                    "population": pop,
                    "check": check,
                    "seconds": round(seconds, 1),
                },
                indent=2,
            )
            + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
