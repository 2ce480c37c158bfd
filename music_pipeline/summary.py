"""What a build learnt about the library, read back from the artifacts on disk.

Every piece is optional: a missing, older or reshaped artifact leaves its part out (with the
reason in ``notes``) instead of failing, because the model assets change more often than this
summary. Used by the closing lines of ``music-pipeline build``/``demo`` and by
``reports/index.html``. Nothing here imports Dagster.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from pathlib import PurePosixPath

import numpy as np
import pandas as pd

from music_pipeline.artifacts import ArtifactPath, read_json, read_npy, read_parquet
from music_pipeline.layout import DataLayout


@dataclass
class LibrarySummary:
    data_dir: ArtifactPath
    tracks: int = 0  # analysed (in the embedding table)
    hours: float = 0.0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (relpath, reason)
    labels: dict[str, int] = field(default_factory=dict)  # label -> tracks ("(unlabelled)" included)
    genre: dict = field(default_factory=dict)  # model, estimate, baseline, kind, predicted (for unlabelled)
    difficulty: dict = field(default_factory=dict)  # levels, pdi quantiles, cnn vs baselines
    similarity: dict = field(default_factory=dict)  # precision@5 vs random
    playlists: list[tuple[str, int]] = field(default_factory=list)  # (name, tracks)
    duplicates: dict = field(default_factory=dict)  # groups, extra_copies, by kind
    maps: list[ArtifactPath] = field(default_factory=list)
    reports_index: ArtifactPath | None = None
    examples: list[str] = field(default_factory=list)  # query strings of real tracks, most typical first
    notes: list[str] = field(default_factory=list)


def _try(notes: list[str], what: str, fn):
    try:
        return fn()
    except FileNotFoundError:
        return None
    except Exception as exc:  # noqa: BLE001 - an artifact of another shape: say so, keep the rest
        notes.append(f"{what}: not read ({type(exc).__name__}: {exc})")
        return None


def collect(data_dir) -> LibrarySummary:
    layout = DataLayout(data_dir)
    s = LibrarySummary(layout.root)
    _try(s.notes, "embedding table", lambda: _tracks(s, layout))
    _try(s.notes, "skipped tracks", lambda: _skipped(s, layout))
    _try(s.notes, "genre model", lambda: _genre(s, layout))
    _try(s.notes, "difficulty", lambda: _difficulty(s, layout))
    _try(s.notes, "difficulty CNN report", lambda: _difficulty_cnn(s, layout))
    _try(s.notes, "similarity index", lambda: _similarity(s, layout))
    _try(s.notes, "playlists", lambda: _playlists(s, layout))
    _try(s.notes, "duplicates", lambda: _duplicates(s, layout))
    for name in ("embedding_map_2d.html", "embedding_map_3d.html"):
        if (layout.reports_dir / name).exists():
            s.maps.append(layout.reports_dir / name)
    if (layout.reports_index).exists():
        s.reports_index = layout.reports_index
    return s


def _tracks(s: LibrarySummary, layout: DataLayout) -> None:
    if not layout.embeddings_path.exists():
        return
    df = read_parquet(layout.embeddings_path, columns=["key", "relpath", "label", "duration_s"])
    s.tracks = len(df)
    s.hours = float(df["duration_s"].sum() / 3600)
    s.labels = {str(k): int(v) for k, v in df["label"].fillna("(unlabelled)").value_counts().items()}


def _skipped(s: LibrarySummary, layout: DataLayout) -> None:
    if layout.skipped_path.exists():
        df = read_parquet(layout.skipped_path)
        s.skipped = [(str(r), str(why)) for r, why in zip(df["relpath"], df["reason"], strict=True)]


def _genre(s: LibrarySummary, layout: DataLayout) -> None:
    status_path = layout.genre_status_path
    if status_path.exists():
        st = read_json(status_path)
        s.genre["trained"] = bool(st.get("trained", True))
        s.genre["model"] = st.get("deployed")
        s.genre["kind"] = st.get("estimate_kind")
        s.genre["note"] = st.get("note") or st.get("reason")
        for key in ("estimate", "baseline"):
            if isinstance(st.get(key), dict):
                s.genre[key] = st[key].get("balanced_accuracy")
    pred_path = layout.genre_predictions_path
    if pred_path.exists():
        pred = read_parquet(pred_path)
        if "predicted" in pred and "label" in pred:
            unlabelled = pred[pred["label"].isna()]
            if len(unlabelled):
                s.genre["predicted_unlabelled"] = {
                    str(k): int(v) for k, v in unlabelled["predicted"].value_counts().items()
                }


def _difficulty(s: LibrarySummary, layout: DataLayout) -> None:
    path = layout.difficulty_table_path
    if not path.exists():
        return
    df = read_parquet(path)
    if "level" in df:
        order = ["Easy", "Medium", "Hard"]
        counts = df["level"].value_counts()
        s.difficulty["levels"] = {
            str(k): int(counts[k]) for k in [*order, *sorted(set(counts.index) - set(order))] if k in counts
        }
    if "pdi" in df and len(df):
        q = np.nanquantile(df["pdi"].to_numpy(dtype=float), [0.0, 0.25, 0.5, 0.75, 1.0])
        s.difficulty["pdi"] = dict(zip(["min", "q25", "median", "q75", "max"], map(float, q), strict=True))
        s.difficulty["easiest"] = str(df.loc[df["pdi"].idxmin(), "relpath"]) if "relpath" in df else None
        s.difficulty["hardest"] = str(df.loc[df["pdi"].idxmax(), "relpath"]) if "relpath" in df else None


def _difficulty_cnn(s: LibrarySummary, layout: DataLayout) -> None:
    path = layout.difficulty_dir / "difficulty_cnn_report.json"
    if not path.exists():
        return
    report = read_json(path)
    acc = report.get("metrics", {}).get("track_accuracy")
    base = report.get("baselines", {})
    if isinstance(acc, (int, float)):
        s.difficulty["cnn_track_accuracy"] = float(acc)
        best = [
            b.get("track_accuracy")
            for b in base.values()
            if isinstance(b, dict) and isinstance(b.get("track_accuracy"), (int, float))
        ]
        if best:
            s.difficulty["cnn_best_baseline"] = float(max(best))


def _similarity(s: LibrarySummary, layout: DataLayout) -> None:
    directory = layout.similarity_dir
    if not (directory / "index.json").exists():
        return
    info = read_json(directory / "index.json")
    lab = (info.get("retrieval") or {}).get("label") or {}
    if lab.get("precision") is not None:
        s.similarity = {"precision_at_5": lab["precision"], "random": lab.get("baseline")}
    tracks = read_parquet(directory / "tracks.parquet", columns=["key", "relpath", "label"])
    vectors = read_npy(directory / "vectors.npy", mmap=True) if (directory / "vectors.npy").exists() else None
    s.examples = example_tracks(tracks, vectors)


def _playlists(s: LibrarySummary, layout: DataLayout) -> None:
    from music_pipeline.playlists.library import PlaylistsNotBuilt, load_playlists

    try:
        saved = load_playlists(layout.root)
    except PlaylistsNotBuilt:
        return
    s.playlists = [(p["name"], len(p["tracks"])) for p in saved.get("playlists", [])]


def _duplicates(s: LibrarySummary, layout: DataLayout) -> None:
    from music_pipeline.identity.duplicates import table_counts

    if layout.duplicates_path.exists():
        s.duplicates = table_counts(read_parquet(layout.duplicates_path, columns=["group", "kind"]))


def example_tracks(tracks: pd.DataFrame, vectors: np.ndarray | None) -> list[str]:
    """Query strings (a unique title, else the library path) of real tracks: the most typical
    track first, then the most typical track of each other label (or the least similar track)."""
    if tracks.empty:
        return []
    relpaths = tracks["relpath"].astype(str).tolist()
    if vectors is not None and len(vectors) == len(tracks):
        v = np.asarray(vectors, dtype=np.float64)
        centre = v.mean(axis=0)
        typical = v @ centre
        first = int(np.argmax(typical))
        order = [first]
        labels = tracks["label"].tolist()
        seen = {labels[first]}
        for i in np.argsort(-typical, kind="stable"):
            if labels[i] not in seen and isinstance(labels[i], str):
                order.append(int(i))
                seen.add(labels[i])
        if len(order) == 1 and len(v) > 1:
            order.append(int(np.argmin(v @ v[first])))
    else:
        order = list(range(min(3, len(relpaths))))
    return [query_string(relpaths[i], relpaths) for i in order]


def query_string(relpath: str, relpaths: list[str]) -> str:
    """The title when it names exactly one track (what a person would type), else the path."""
    title = PurePosixPath(relpath).stem
    same = sum(PurePosixPath(r).stem.lower() == title.lower() for r in relpaths)
    return title if same == 1 else relpath


def next_commands(s: LibrarySummary, data_arg: str = "") -> list[str]:
    """Three commands to try next, with real track names of this library."""
    d = f" {data_arg}" if data_arg else ""
    ex = s.examples
    if not ex:
        return [f"music-pipeline ui{d}"]
    a = shlex.quote(ex[0])
    b = shlex.quote(ex[1]) if len(ex) > 1 else None
    cmds = [f"music-pipeline similar {a} -n 5{d}"]
    if b:
        cmds.append(f"music-pipeline compare {a} {b}{d}")
    cmds.append(f"music-pipeline radio {shlex.quote(ex[-1] if len(ex) > 2 else ex[0])} --length 8{d}")
    if s.playlists:
        cmds.append(f"music-pipeline playlists{d}")
    return cmds


def _pct(x) -> str:
    return f"{x:.2f}" if isinstance(x, (int, float)) else "n/a"


def summary_lines(s: LibrarySummary, data_arg: str = "", show_skipped: int = 20) -> list[str]:
    """The closing lines of a build: what was learnt, where to look, what to try next."""
    length = f"{s.hours:.1f} h" if s.hours >= 1 else f"{s.hours * 60:.0f} min"
    out = [f"What the pipeline learnt about {s.tracks} tracks ({length} of audio):"]
    if s.labels:
        shown = ", ".join(f"{k} {v}" for k, v in list(s.labels.items())[:8])
        more = f", … {len(s.labels) - 8} more" if len(s.labels) > 8 else ""
        out.append(f"  labels         {shown}{more}")
    g = s.genre
    if g.get("estimate") is not None:
        base = f" vs {_pct(g.get('baseline'))} majority baseline" if g.get("baseline") is not None else ""
        kind = f" ({g['kind']})" if g.get("kind") else ""
        out.append(
            f"  genre          {g.get('model') or 'classifier'}: balanced accuracy {_pct(g['estimate'])}{kind}{base}"
        )
    elif g.get("trained") is False:
        out.append(f"  genre          not trained: {g.get('note') or 'too few labelled tracks'}")
    if g.get("predicted_unlabelled"):
        out.append(
            "  genre guesses  for unlabelled tracks: "
            + ", ".join(f"{k} {v}" for k, v in g["predicted_unlabelled"].items())
        )
    dif = s.difficulty
    if dif.get("levels"):
        levels = ", ".join(f"{k} {v}" for k, v in dif["levels"].items())
        spread = ""
        if dif.get("pdi"):
            p = dif["pdi"]
            spread = f"; PDI {p['min']:.2f}–{p['max']:.2f} (median {p['median']:.2f})"
        out.append(f"  difficulty     {levels}{spread}")
        if dif.get("easiest") and dif.get("hardest"):
            out.append(f"                 easiest {dif['easiest']}, hardest {dif['hardest']}")
    if dif.get("cnn_track_accuracy") is not None:
        base = (
            f" vs {_pct(dif.get('cnn_best_baseline'))} best baseline"
            if dif.get("cnn_best_baseline") is not None
            else ""
        )
        out.append(f"  difficulty CNN track accuracy {_pct(dif['cnn_track_accuracy'])} (grouped CV){base}")
    if s.similarity.get("precision_at_5") is not None:
        out.append(
            f"  similarity     same-label precision@5 {_pct(s.similarity['precision_at_5'])} vs {_pct(s.similarity.get('random'))} for random neighbours"
        )
    if s.playlists:
        shown = ", ".join(f"{name} ({n})" for name, n in s.playlists[:4])
        more = f", … {len(s.playlists) - 4} more" if len(s.playlists) > 4 else ""
        out.append(f"  playlists      {len(s.playlists)} by sound: {shown}{more}")
    if s.duplicates:
        d = s.duplicates
        kinds = ", ".join(f"{k} {v}" for k, v in d["kinds"].items())
        out.append(
            f"  duplicates     {d['groups']} group{'s' * (d['groups'] != 1)} ({d['extra_copies']} extra "
            f"cop{'ies' if d['extra_copies'] != 1 else 'y'}){': ' + kinds if kinds else ''}"
            if d["groups"]
            else "  duplicates     none: no recording is stored twice"
        )
    if s.skipped and show_skipped > 0:
        out.append(f"  skipped        {len(s.skipped)} file(s):")
        for rel, why in s.skipped[:show_skipped]:
            out.append(f"                   {rel}: {why}")
        if len(s.skipped) > show_skipped:
            out.append(
                f"                   … {len(s.skipped) - show_skipped} more in {DataLayout(s.data_dir).skipped_path}"
            )
    out.append("")
    if s.maps:
        out.append(f"Map of the library:  {s.maps[0]}")
    if s.reports_index:
        out.append(f"All reports:         {s.reports_index}")
    out.append("")
    out.append("Try next:")
    out.extend(f"  {c}" for c in next_commands(s, data_arg))
    out.append(
        f"  music-pipeline ui{' ' + data_arg if data_arg else ''}          # runs, assets, plots in the Dagster UI"
    )
    return out


def as_json(s: LibrarySummary) -> str:
    return json.dumps(
        {
            "tracks": s.tracks,
            "hours": s.hours,
            "labels": s.labels,
            "skipped": [{"relpath": r, "reason": w} for r, w in s.skipped],
            "genre": s.genre,
            "difficulty": s.difficulty,
            "similarity": s.similarity,
            "playlists": [{"name": n, "tracks": k} for n, k in s.playlists],
            "duplicates": s.duplicates,
            "maps": [str(m) for m in s.maps],
            "reports_index": str(s.reports_index) if s.reports_index else None,
            "examples": s.examples,
        }
    )
