"""Maps of the library: UMAP projections as interactive HTML, a PNG preview, the embedding journey.

The HTML files reference ``plotly.min.js`` written beside them (offline: no CDN), so several maps
share one copy of the library. ``umap`` is imported inside ``umap_projection``: it pulls in
TensorFlow and compiles numba kernels (seconds).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from music_pipeline.artifacts import artifact_path, read_bytes, read_parquet, write_parquet, write_text
from music_pipeline.features.embedding import FEATURE_GROUPS, FEATURE_NAMES
from music_pipeline.layout import DataLayout
from music_pipeline.search.discovery import Discovery
from music_pipeline.search.exact import exact_topk
from music_pipeline.search.space import GROUPS

MIN_TRACKS = 5  # fewer tracks make no map

UNLABELLED = "(unlabelled)"
NO_LEVEL = "(no PDI level)"
NO_PLAYLIST = "(no playlist)"


def umap_projection(vectors: np.ndarray, n_components: int, seed: int = 0, n_neighbors: int = 15) -> np.ndarray:
    import warnings

    import umap

    n = len(vectors)
    reducer = umap.UMAP(
        n_components=n_components,
        n_neighbors=max(2, min(n_neighbors, n - 1)),
        min_dist=0.1,
        random_state=seed,
        init="random" if n < 50 else "spectral",
    )
    with warnings.catch_warnings():  # a fixed seed makes UMAP single-threaded, and it says so every time
        warnings.filterwarnings("ignore", message="n_jobs value", category=UserWarning)
        return reducer.fit_transform(np.asarray(vectors, dtype=np.float32))


def map_frame(
    tracks: pd.DataFrame, difficulty: pd.DataFrame | None, playlists: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Per indexed track: key, title, label, level, pdi, playlist (hover and colour data)."""
    out = pd.DataFrame(
        {
            "key": tracks["key"].to_numpy(),
            "title": [Path(r).stem for r in tracks["relpath"]],
            "relpath": tracks["relpath"].to_numpy(),
        }
    )
    out["label"] = [x if isinstance(x, str) and x else UNLABELLED for x in tracks["label"]]
    if difficulty is not None and {"key", "level"} <= set(difficulty.columns):
        cols = ["key", "level"] + (["pdi"] if "pdi" in difficulty.columns else [])
        out = out.merge(difficulty[cols].drop_duplicates("key"), on="key", how="left")
    if "level" not in out:
        out["level"] = None
    if "pdi" not in out:
        out["pdi"] = np.nan
    out["level"] = [
        str(x) if x is not None and not (isinstance(x, float) and np.isnan(x)) else NO_LEVEL for x in out["level"]
    ]
    playlist = {}
    if playlists is not None and {"key", "playlist"} <= set(playlists.columns):
        playlist = dict(zip(playlists["key"], playlists["playlist"], strict=True))
    out["playlist"] = [playlist.get(k, NO_PLAYLIST) for k in out["key"]]
    return out


def _hover(frame: pd.DataFrame) -> list[str]:
    return [
        f"<b>{r.title}</b><br>label: {r.label}<br>playlist: {r.playlist}<br>PDI level: {r.level}"
        + (f" (PDI {r.pdi:.2f})" if np.isfinite(r.pdi) else "")
        + f"<br>{r.relpath}"
        for r in frame.itertuples()
    ]


def map_figure(coords: np.ndarray, frame: pd.DataFrame, title: str):
    """Scatter (2-D or 3-D) with one trace per label, and per PDI level and per playlist behind a
    colour switch."""
    import plotly.graph_objects as go

    three_d = coords.shape[1] == 3
    hover = np.array(_hover(frame), dtype=object)
    fig = go.Figure()
    colourings = [("label", "label")]
    if (frame["level"] != NO_LEVEL).any():
        colourings.append(("level", "PDI level"))
    if "playlist" in frame and (frame["playlist"] != NO_PLAYLIST).any():
        colourings.append(("playlist", "playlist"))
    visibility = []
    for ci, (col, _) in enumerate(colourings):
        for value in sorted(frame[col].unique()):
            m = (frame[col] == value).to_numpy()
            kw = {
                "name": str(value),
                "legendgroup": col,
                "text": hover[m],
                "hoverinfo": "text",
                "mode": "markers",
                "visible": ci == 0,
            }
            if three_d:
                fig.add_trace(go.Scatter3d(x=coords[m, 0], y=coords[m, 1], z=coords[m, 2], marker={"size": 4}, **kw))
            else:
                fig.add_trace(go.Scatter(x=coords[m, 0], y=coords[m, 1], marker={"size": 8}, **kw))
            visibility.append(ci)
    if len(colourings) > 1:
        buttons = [
            {"label": f"colour: {name}", "method": "update", "args": [{"visible": [v == ci for v in visibility]}]}
            for ci, (_, name) in enumerate(colourings)
        ]
        fig.update_layout(
            updatemenus=[{"buttons": buttons, "direction": "down", "x": 0.0, "y": 1.12, "xanchor": "left"}]
        )
    fig.update_layout(title=title, template="plotly_white", legend_title_text="colour", height=700)
    return fig


def write_map_html(fig, dest: Path) -> Path:
    """Atomic HTML referencing ``plotly.min.js`` in the same directory (written once, offline)."""
    import plotly
    import plotly.offline

    dest = artifact_path(dest)
    js = dest.parent / "plotly.min.js"
    stamp = dest.parent / ".plotly-version"
    if not js.is_file() or not stamp.is_file() or read_bytes(stamp).decode() != plotly.__version__:
        write_text(js, plotly.offline.get_plotlyjs())
        write_text(stamp, plotly.__version__)
    return write_text(dest, fig.to_html(include_plotlyjs="directory", full_html=True))


def map_preview_png(coords: np.ndarray, frame: pd.DataFrame, dest: Path) -> Path:
    from music_pipeline.plotting import plt, save_png

    fig, ax = plt.subplots(figsize=(7, 5.5))
    cmap = plt.get_cmap("tab10" if frame["label"].nunique() <= 10 else "tab20")
    for i, label in enumerate(sorted(frame["label"].unique())):
        m = (frame["label"] == label).to_numpy()
        ax.scatter(coords[m, 0], coords[m, 1], s=18, color=cmap(i % cmap.N), label=label, alpha=0.85)
    ax.set_xlabel("UMAP 1")
    ax.set_ylabel("UMAP 2")
    ax.set_title(f"Library map ({len(frame)} tracks, UMAP of the similarity space)")
    if frame["label"].nunique() <= 20:
        ax.legend(fontsize=7, loc="best", markerscale=0.8)
    return save_png(fig, dest)


def journey_png(audio_path: str | Path, raw: np.ndarray, z: np.ndarray, title: str, dest: Path) -> Path:
    """Waveform → log-mel spectrogram → feature groups → the 641-D vector, for one track."""
    import librosa
    import librosa.display

    from music_pipeline.audio.decode import decode
    from music_pipeline.plotting import plt, save_png

    audio = decode(audio_path)
    y, sr = audio.y, audio.sr
    fig, axes = plt.subplots(4, 1, figsize=(11, 12), gridspec_kw={"height_ratios": [1, 1.4, 1, 1.2]})
    t = np.arange(len(y)) / sr
    step = max(1, len(y) // 20_000)
    axes[0].plot(t[::step], y[::step], lw=0.5, color="0.2")
    axes[0].set(
        title=f"1. Waveform — {title} ({len(y) / sr:.1f} s)",
        xlabel="time (s)",
        ylabel="amplitude",
        xlim=(0, t[-1] if len(t) else 1),
    )
    mel = librosa.power_to_db(librosa.feature.melspectrogram(y=y, sr=sr, n_mels=128), ref=np.max)
    librosa.display.specshow(mel, sr=sr, x_axis="time", y_axis="mel", ax=axes[1], cmap="magma")
    axes[1].set_title("2. Log-mel spectrogram (dB)")
    colours = dict(zip(GROUPS, plt.get_cmap("tab10").colors, strict=False))
    group_of = np.array([FEATURE_GROUPS[n] for n in FEATURE_NAMES])
    rms_z = [float(np.sqrt(np.mean(z[group_of == g] ** 2))) for g in GROUPS]
    bars = axes[2].barh(GROUPS, rms_z, color=[colours[g] for g in GROUPS])
    for g, b in zip(GROUPS, bars, strict=True):
        axes[2].text(
            b.get_width(),
            b.get_y() + b.get_height() / 2,
            f"  {int((group_of == g).sum())} features",
            va="center",
            fontsize=8,
        )
    tempo = raw[FEATURE_NAMES.index("tempo_bpm")]
    axes[2].set(
        title=f"3. Feature groups: how far from the library average (RMS z-score); tempo {tempo:.0f} BPM",
        xlabel="RMS of standardised features",
    )
    zc = np.clip(z, -4, 4)
    for g in GROUPS:
        m = group_of == g
        axes[3].vlines(np.flatnonzero(m), 0, zc[m], color=colours[g], lw=0.8, label=g)
    axes[3].axhline(0, color="0.5", lw=0.5)
    axes[3].set(
        title="4. The 641-D vector (standardised on the library, clipped to ±4)",
        xlabel="dimension",
        ylabel="z-score",
        xlim=(-1, len(z)),
    )
    axes[3].legend(ncol=5, fontsize=8, loc="upper right")
    fig.tight_layout()
    return save_png(fig, dest)


@dataclass
class LibraryMap:
    """What ``draw_library_map`` wrote and measured (paths are None where nothing was drawn)."""

    tracks_mapped: int
    reason: str = ""  # why no map was drawn
    seconds: float = 0.0
    html_2d: Path | None = None
    html_3d: Path | None = None
    coordinates: Path | None = None
    preview: Path | None = None
    with_levels: bool = False
    journey: Path | None = None
    journey_track: str = ""
    journey_skipped: Exception | None = None  # why the journey figure is missing


def most_typical(vectors, chunk: int = 100_000) -> int:
    """Row nearest the library's mean direction, reading the vectors a chunk at a time."""
    total = np.zeros(vectors.shape[1])
    for s in range(0, len(vectors), chunk):
        total += np.asarray(vectors[s : s + chunk]).sum(axis=0, dtype=np.float64)
    return int(exact_topk(vectors, (total / len(vectors)).astype(np.float32), 1)[0][0, 0])


def draw_library_map(
    disc: Discovery, layout: DataLayout, seed: int = 0, max_points: int = 50_000, journey_track: str = ""
) -> LibraryMap:
    """UMAP maps (2-D and 3-D HTML, coordinates, PNG preview) of the similarity space, coloured by
    label, PDI level where the difficulty table exists and playlist where the playlists exist, and the embedding-journey figure of one
    track (``journey_track``, else the most typical). Larger libraries are mapped on a seeded
    sample of ``max_points``."""
    index = disc.index
    if len(index) < MIN_TRACKS:  # a small library is not an error: no map, and the reason
        return LibraryMap(len(index), reason=f"{len(index)} tracks: too few for a map (need {MIN_TRACKS})")
    rows = np.arange(len(index))
    if len(rows) > max_points:
        rows = np.sort(np.random.default_rng(seed).choice(rows, max_points, replace=False))
    vectors = np.asarray(index.index.vectors[rows])
    diff_path = layout.difficulty_table_path
    difficulty = read_parquet(diff_path) if diff_path.is_file() else None
    pl_path = layout.playlist_tracks_path
    playlists = read_parquet(pl_path) if pl_path.is_file() else None
    frame = map_frame(index.tracks.iloc[rows].reset_index(drop=True), difficulty, playlists)
    t0 = time.perf_counter()
    c2 = umap_projection(vectors, 2, seed)
    c3 = umap_projection(vectors, 3, seed)
    seconds = time.perf_counter() - t0
    coords = pd.concat(
        [
            frame[["key", "label", "level", "playlist"]],
            pd.DataFrame(np.hstack([c2, c3]), columns=["x2", "y2", "x3", "y3", "z3"]),
        ],
        axis=1,
    )
    write_parquet(layout.embedding_map_path, coords)
    html_2d, html_3d = layout.embedding_map_html
    out = LibraryMap(
        len(rows),
        seconds=seconds,
        html_2d=write_map_html(map_figure(c2, frame, f"Library map, UMAP 2-D ({len(rows)} tracks)"), html_2d),
        html_3d=write_map_html(map_figure(c3, frame, f"Library map, UMAP 3-D ({len(rows)} tracks)"), html_3d),
        coordinates=layout.embedding_map_path,
        preview=map_preview_png(c2, frame, layout.plots_dir / "embedding_map_2d.png"),
        with_levels=difficulty is not None,
    )
    try:
        q = disc.resolve(journey_track or index.tracks["key"].iloc[most_typical(index.index.vectors)])
        raw = disc.raw_features(q)
        out.journey_track = q.relpath or q.path
        out.journey = journey_png(
            q.path, raw, index.transform.standardise(raw), out.journey_track, layout.plots_dir / "embedding_journey.png"
        )
    except Exception as exc:  # noqa: BLE001 - unreadable audio, unknown track: the maps stand without the journey
        out.journey_skipped = exc
    return out
