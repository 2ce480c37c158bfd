"""Does analysing at most N patches (N × 3 s spread over the track) hold the learned embedding's
accuracy? Cost and accuracy for several caps against the whole track, in the same run.

    python benchmarks/bench_learned_cap.py --library DIR [--caps 5,10,20] [--limit N]

The library needs labels (labels.csv or folders). For every cap and for "all patches" the script
prints the network's CPU seconds per track (one onnxruntime thread), the cosine between the capped
and the whole-track embedding, leave-one-out same-label precision@5 of the standardised embedding,
and the balanced accuracy of logistic regression on it over grouped folds (the library's groups, else
tracks). Decoding and the 641 dims are not part of the comparison (they do not change with the cap).
"""

from __future__ import annotations

import argparse
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--library", required=True)
    ap.add_argument("--caps", default="5,10,20")
    ap.add_argument("--limit", type=int, default=0)
    args = ap.parse_args()

    import common  # noqa: F401  (one BLAS thread)
    import numpy as np

    from music_pipeline.audio.decode import decode
    from music_pipeline.audio.scan import scan_library
    from music_pipeline.genre.cv import balanced_accuracy, make_folds
    from music_pipeline.learned.musicnn import SR, log_mel_patches
    from music_pipeline.learned.store import _network
    from music_pipeline.search.exact import normalise
    from music_pipeline.search.space import precision_at_k, standard_scaler

    scan = scan_library(args.library)
    tracks = [t for t in scan.tracks if t.label and not t.scan_error]
    if args.limit:
        tracks = tracks[: args.limit]
    caps = [int(c) for c in args.caps.split(",")] + [10**6]
    net = _network()
    net.run(np.zeros((2, 187, 96), np.float32))
    emb = {c: [] for c in caps}
    cpu = {c: 0.0 for c in caps}
    for t in tracks:
        y = decode(t.path, SR).y
        for c in caps:
            t0 = time.process_time()
            patches, _ = log_mel_patches(y, c)
            pen = net.run(patches)["MSD_musicnn"][0]
            cpu[c] += time.process_time() - t0
            emb[c].append(np.concatenate([pen.mean(0), pen.max(0)]))
    labels = np.array([t.label for t in tracks], dtype=object)
    groups = np.array([t.group or t.key for t in tracks], dtype=object)
    classes = sorted(set(labels))
    y = np.searchsorted(classes, labels)
    plan = make_folds(y, groups, classes=classes)
    full = np.array(emb[10**6])
    print(f"{len(tracks)} tracks; folds: {plan.note}")
    print(f"{'cap':>8} {'s/track':>8} {'cost vs all':>11} {'cos to all':>10} {'label p@5':>9} {'logreg bal.acc':>14}")
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    for c in caps:
        E = np.array(emb[c])
        m, s = standard_scaler(E)
        p5 = precision_at_k(normalise((E - m) / s), labels, 5)["precision"]
        pred = np.zeros(len(y), int)
        for tr, te in plan.grouped:
            sc = StandardScaler().fit(E[tr])
            lr = LogisticRegression(C=0.05, class_weight="balanced", max_iter=3000).fit(sc.transform(E[tr]), y[tr])
            pred[te] = lr.predict(sc.transform(E[te]))
        cos = float(np.mean(np.sum(normalise(E) * normalise(full), axis=1)))
        name = "all" if c == 10**6 else str(c)
        print(
            f"{name:>8} {cpu[c] / len(tracks):8.2f} {cpu[c] / cpu[10**6]:11.2f} {cos:10.4f} {p5:9.3f} {balanced_accuracy(y, pred):14.3f}"
        )


if __name__ == "__main__":
    main()
