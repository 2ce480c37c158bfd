"""The explorer's answers, without HTTP: everything the web API returns, built on the same core as
the CLI (``search.discovery.Discovery`` for queries, ``search.results`` for their JSON objects,
``web.facts`` for genre and difficulty). The index is loaded once, when the Explorer is made.

Queries from the network resolve to library tracks only (key, library path or title; never an
outside file), and every failure is a ``NotFound`` or a ``BadParameter`` with a one-line message.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from pathlib import Path, PurePosixPath

import numpy as np

from music_pipeline.artifacts import UnsafePathError, read_parquet, safe_join
from music_pipeline.difficulty.pdi import LEVELS as LEVEL_ORDER
from music_pipeline.harmony.library import key_of_features
from music_pipeline.layout import DataLayout
from music_pipeline.search.discovery import (
    AmbiguousTrack,
    Discovery,
    QueryError,
    ResolvedTrack,
    TrackNotFound,
    title_of,
)
from music_pipeline.search.results import compare_json, path_json, radio_json, similar_json
from music_pipeline.web.facts import Facts

log = logging.getLogger(__name__)

TRACK_PAGE_NEIGHBOURS = 5
TRACK_PAGE_VERSIONS = 5  # other performances of the composition shown on the track page
TRACK_PAGE_DIVERSITY = 0.7  # MMR λ of the "diverse" list on the track page
MAP_MAX_POINTS = 50_000  # as the embedding_map asset: larger libraries are drawn from a sample


def music_key(raw: np.ndarray) -> dict:
    """{"key", "camelot", "confidence"} of a track from its stored 641 features (its chroma means)."""
    return key_of_features(raw).as_dict()


class NotFound(LookupError):
    pass


class BadParameter(ValueError):
    pass


def one_line(text) -> str:
    """A multi-line message (e.g. a list of matching tracks) as one line."""
    out = ""
    for part in (p.strip() for p in str(text).splitlines()):
        if part:
            out += part if not out else (" " if out.endswith(":") else "; ") + part
    return out


class Explorer:
    def __init__(self, data_dir, library_root: str | Path | None = None):
        self.data_dir = data_dir
        self.layout = DataLayout(data_dir)
        self.disc = Discovery.open(data_dir, library_root)
        self.index = self.disc.index
        self.tracks = self.index.tracks
        self.facts = Facts(data_dir)
        self.durations = self._durations()
        self._map = None
        self._map_lock = threading.Lock()
        self.map_bodies: dict[str, bytes] = {}  # the rendered /api/map answer (plain, gzip)
        self._delivery: dict[tuple, object] = {}
        if len(self.index):  # pay first-query costs (pruning arrays, faiss warm-up, search rows) before serving
            self.disc.with_keys()  # every row shows its key: all read once
            self.disc.similar(self.tracks["key"].iloc[0], TRACK_PAGE_NEIGHBOURS)
            self.disc.find("warm-up", 1)

    def _durations(self) -> dict[str, float]:
        try:
            t = read_parquet(self.layout.embeddings_path, columns=["key", "duration_s"])
            return {str(k): float(d) for k, d in zip(t["key"], t["duration_s"], strict=True)}
        except Exception:  # noqa: BLE001 - an older table without durations: playlists say -1 (unknown)
            return {}

    # -- resolving ------------------------------------------------------------------------------
    def resolve(self, text: str | None, what: str = "track") -> ResolvedTrack:
        if text is None or not str(text).strip():
            raise BadParameter(f"missing parameter {what}")
        try:
            return self.disc.resolve(text, files=False)
        except TrackNotFound as exc:
            raise NotFound(one_line(exc)) from exc
        except (AmbiguousTrack, QueryError) as exc:
            raise BadParameter(one_line(exc)) from exc

    def position(self, key: str) -> int:
        pos = self.index.position(key)
        if pos is None:
            raise NotFound(f"no track with key {key!r} in this library")
        return pos

    def summary(self, pos: int) -> dict:
        row = self.tracks.iloc[int(pos)]
        key = row["key"]
        level = self.facts.levels().get(key)
        return {
            "track": key,
            "title": title_of(row["relpath"]),
            "relpath": row["relpath"],
            "path": self.disc.path_of(row["relpath"]),
            "label": row["label"],
            "level": level[0] if level else None,
            "pdi": level[1] if level else None,
            "duration_s": self.durations.get(key),
            "tempo_bpm": float(row["tempo_bpm"]),
            **self.disc.key_facts(int(pos)),  # key, camelot, key_confidence
        }

    # -- the API's answers ----------------------------------------------------------------------
    def info(self) -> dict:
        labels = self.tracks["label"].dropna().value_counts().sort_index()
        levels = self.facts.levels()
        st = self.index.index.ann_state
        return {
            "tracks": len(self.index),
            "labels": {str(k): int(v) for k, v in labels.items()},
            "levels": [lv for lv in LEVEL_ORDER if lv in {v for v, _ in levels.values()}],
            "library_root": str(self.disc.library_root) if self.disc.library_root else None,
            "search": "approximate (faiss IVF)" if st is not None else "exact",
            "transform": self.index.transform.kind,
            "duplicates": self.duplicate_counts(),
            "bpm_range": [float(np.nanmin(self.tracks["tempo_bpm"])), float(np.nanmax(self.tracks["tempo_bpm"]))]
            if len(self.tracks)
            else None,
        }

    def duplicate_counts(self) -> dict:
        """{"groups", "extra_copies", "kinds"} of the build's duplicate_groups table (as the build
        summary counts them: identical-bytes copies included, which the similarity index holds once)."""
        from music_pipeline.identity.duplicates import table_counts

        return table_counts(self.disc.duplicate_table())

    def search(self, q: str, limit: int) -> dict:
        return {"query": q, "results": [self.summary(p) for p in self.disc.find(q, limit)]}

    def similar(self, track: str, n: int, diverse: float | None) -> dict:
        q, hits = self.disc.similar(self.resolve(track), n, diverse)
        return similar_json(q, hits, diverse)

    def compare(self, a: str, b: str) -> dict:
        try:
            return compare_json(*self.disc.compare(self.resolve(a, "a"), self.resolve(b, "b")))
        except QueryError as exc:  # e.g. the embeddings table is gone
            raise BadParameter(one_line(exc)) from exc

    def radio(
        self,
        seed: str,
        length: int,
        bpm: float | None,
        bpm_tolerance: float,
        energy: float | None,
        energy_tolerance: float,
        pull: float,
        harmonic: bool = False,
    ) -> dict:
        q, hits = self.disc.radio(
            self.resolve(seed, "seed"), length, bpm, bpm_tolerance, energy, energy_tolerance, pull, harmonic
        )
        filters = {
            "bpm": bpm,
            "bpm_tolerance": bpm_tolerance,
            "energy": energy,
            "energy_tolerance": energy_tolerance,
            "harmonic": harmonic,
        }
        return radio_json(q, hits, filters)

    def path(self, a: str, b: str, length: int, harmonic: bool = False) -> dict:
        qa, qb = self.resolve(a, "from"), self.resolve(b, "to")
        if qa.position == qb.position:
            raise BadParameter("from and to are the same track")
        qa, qb, hits = self.disc.path(qa, qb, length, harmonic=harmonic)
        return path_json(qa, qb, hits, length)

    def track(self, key: str) -> dict:
        pos = self.position(key)
        q = self.disc.resolve(key, files=False)
        out = {"track": self.summary(pos)}
        out["similar"] = similar_json(*self.disc.similar(q, TRACK_PAGE_NEIGHBOURS), None)
        out["diverse"] = similar_json(
            *self.disc.similar(q, TRACK_PAGE_NEIGHBOURS, TRACK_PAGE_DIVERSITY), TRACK_PAGE_DIVERSITY
        )
        for hit_list in (out["similar"]["results"], out["diverse"]["results"]):
            for h in hit_list:
                h["title"] = title_of(h["relpath"])
        out["difficulty"] = self.facts.difficulty(key)
        try:
            raw = np.asarray(self.disc.raw_features(q), dtype=np.float64)
            out["genre"] = self.facts.genre(key, raw, q.label is not None)
            out["music_key"] = music_key(raw)
        except QueryError as exc:
            out["genre"] = {"available": False, "reason": one_line(exc)}
            out["music_key"] = None
        out["duplicates"] = [{**d, "title": title_of(d["relpath"])} for d in self.disc.duplicates_of(pos)]
        point = self.map_points()["by_key"].get(key)
        out["map"] = point
        return out

    def versions(self, key: str, n: int = TRACK_PAGE_VERSIONS) -> dict:
        """Other performances of this track's composition (``identity.versions``, what
        ``music-pipeline versions`` answers), each with its title; ``available`` false with the
        reason when the library has no harmonic sequences yet."""
        from music_pipeline.identity import versions

        self.position(key)  # NotFound for a key this library does not hold
        with self._map_lock:
            if getattr(self, "_versions", None) is None:
                try:
                    self._versions = versions.load_library(self.data_dir)
                except versions.VersionsNotBuilt as exc:
                    return {"available": False, "reason": one_line(exc), "results": []}
        try:
            out = versions.find_versions(key, self._versions, n, files=False)
        except versions.QueryError as exc:
            return {"available": False, "reason": one_line(exc), "results": []}
        for r in out["results"]:
            r["title"] = title_of(r["path"])
        return {"available": True, **out}

    # -- listening ------------------------------------------------------------------------------
    def listening_library(self):
        """The index's tracks and vectors for the recommender (made once per explorer)."""
        from music_pipeline.listening.service import open_library

        with self._map_lock:
            if getattr(self, "_listening", None) is None:
                self._listening = open_library(self.data_dir, self.index)
            return self._listening

    # -- the map --------------------------------------------------------------------------------
    def map_points(self) -> dict:
        """2-D coordinates of the library: the embedding_map asset's UMAP when it covers the index,
        else the first two principal components of the index vectors (said so in ``source``)."""
        with self._map_lock:
            if self._map is None:
                self._map = self._build_map()
            return self._map

    def _build_map(self) -> dict:
        keys = self.tracks["key"].astype(str).to_numpy()
        source, note = "umap", "UMAP of the similarity space (embedding_map asset)"
        path = self.layout.embedding_map_path
        coords = None
        if path.is_file():
            t = read_parquet(path, columns=["key", "x2", "y2"])
            found = dict(
                zip(t["key"].astype(str), zip(t["x2"].astype(float), t["y2"].astype(float), strict=True), strict=True)
            )
            rows = [i for i, k in enumerate(keys) if k in found]
            if len(rows) >= min(len(keys), MAP_MAX_POINTS) * 0.9:  # a map of (nearly) this library
                coords = np.array([found[keys[i]] for i in rows], dtype=np.float64).reshape(-1, 2)
                rows = np.array(rows, dtype=np.int64)
        if coords is None:
            rows = np.arange(len(keys))
            if len(rows) > MAP_MAX_POINTS:
                rows = np.sort(np.random.default_rng(0).choice(rows, MAP_MAX_POINTS, replace=False))
            v = np.asarray(self.index.index.vectors[rows], dtype=np.float64)
            if len(v) >= 2:
                v = v - v.mean(axis=0)
                _, _, vt = np.linalg.svd(v[:20_000], full_matrices=False)
                coords = v @ vt[:2].T
            else:
                coords = np.zeros((len(v), 2))
            source, note = (
                "pca",
                "the UMAP map is not built for this library yet (embedding_map asset): first two principal components of the index vectors",
            )
        levels = self.facts.levels()
        sub = self.tracks.iloc[rows]
        playlist = {}
        if self.layout.playlist_tracks_path.is_file():
            t = read_parquet(self.layout.playlist_tracks_path, columns=["key", "playlist"])
            playlist = dict(zip(t["key"].astype(str), t["playlist"], strict=True))
        points = {
            "track": keys[rows].tolist(),
            "title": [title_of(r) for r in sub["relpath"]],
            "label": [x if isinstance(x, str) and x else None for x in sub["label"]],
            "level": [levels.get(k, (None, None))[0] for k in keys[rows]],
            "playlist": [playlist.get(k) for k in keys[rows]],
            "x": np.round(coords[:, 0], 4).tolist(),
            "y": np.round(coords[:, 1], 4).tolist(),
        }
        by_key = {k: {"x": x, "y": y} for k, x, y in zip(points["track"], points["x"], points["y"], strict=True)}
        return {"source": source, "note": note, "count": len(rows), "points": points, "by_key": by_key}

    # -- playlists ------------------------------------------------------------------------------
    def library_playlists(self) -> dict:
        """The library's playlists (``library_playlists`` asset), tracks of this index only, each
        with its summary (title, label, level) for the page."""
        from music_pipeline.playlists.library import PlaylistsNotBuilt, load_playlists, public_json

        try:
            saved = public_json(load_playlists(self.layout.root))
        except PlaylistsNotBuilt:
            return {
                "playlists": [],
                "note": "no playlists yet: the library_playlists asset makes them at the next build",
            }
        out = []
        for p in saved["playlists"]:
            rows = [self.summary(pos) for t in p["tracks"] if (pos := self.index.position(t["track"])) is not None]
            out.append({"name": p["name"], "why": p["why"], "tracks": rows})
        return {"playlists": out, "clustering": saved["clustering"]}

    def library_playlist(self, number: int) -> tuple[str, list[str]]:
        """Title and track keys of playlist ``number`` (1-based), for the M3U8/XSPF downloads."""
        lists = self.library_playlists()["playlists"]
        if not 1 <= number <= len(lists):
            raise NotFound(f"no playlist {number} (there are {len(lists)})")
        p = lists[number - 1]
        return p["name"], [t["track"] for t in p["tracks"]]

    def entries(self, keys: list[str]) -> list[dict]:
        if self.disc.library_root is None:
            raise BadParameter("the library folder is not known (remote data dir): start serve with --library")
        out = []
        for k in keys:
            pos = self.position(k)
            rel = self.tracks["relpath"].iloc[pos]
            out.append(
                {
                    "path": str(self.disc.library_root / PurePosixPath(rel)),
                    "title": title_of(rel),
                    "label": self.tracks["label"].iloc[pos],
                    "duration_s": self.durations.get(k),
                }
            )
        return out

    # -- audio ----------------------------------------------------------------------------------
    def audio_file(self, key: str) -> Path:
        """The library file of a track key: the key is looked up, its stored relative path joined
        under the library root and refused if it would leave it."""
        pos = self.position(key)
        if self.disc.library_root is None:
            raise NotFound("the library folder is not known (remote data dir): start serve with --library")
        try:
            path = safe_join(self.disc.library_root, *PurePosixPath(self.tracks["relpath"].iloc[pos]).parts)
        except UnsafePathError as exc:
            raise NotFound(f"track {key} is not inside the library folder") from exc
        if not path.is_file():
            raise NotFound(f"the file of track {key} is gone from the library ({self.tracks['relpath'].iloc[pos]})")
        return path

    def delivery(self, key: str, path: Path):
        from music_pipeline.web.audio import delivery_for

        stamp = (key, path.stat().st_mtime_ns)  # a replaced file is looked at again
        d = self._delivery.get(stamp)
        if d is None:
            d = self._delivery[stamp] = delivery_for(path)
        return d


class LiveExplorer:
    """The Explorer of a data directory, made again when a build replaces what it serves.

    Every ``check_every`` seconds at most, a request compares the bytes of the files that mark a new
    build (the index's ``index.json``, written last; the genre model's ``CURRENT.json``; the PDI
    model) with those seen at load. On a change the next explorer is loaded once, by that request,
    while the others keep answering from the current one; if loading fails the current one stays.
    """

    def __init__(self, data_dir, library_root: str | Path | None = None, check_every: float = 5.0):
        self.data_dir, self.library_root, self.check_every = data_dir, library_root, check_every
        self._lock = threading.Lock()
        self._stamp = self._build_stamp()
        self.current = Explorer(data_dir, library_root)
        self._checked = time.monotonic()

    def _build_stamp(self) -> tuple:
        from music_pipeline.artifacts import read_bytes
        from music_pipeline.difficulty.pdi import MODEL_FILE

        layout = DataLayout(self.data_dir)
        stamp = []
        for p in (
            DataLayout(self.data_dir).similarity_dir / "index.json",
            layout.genre_dir / "CURRENT.json",
            layout.difficulty_dir / MODEL_FILE,
        ):
            try:
                stamp.append(hashlib.sha1(read_bytes(p)).hexdigest())
            except OSError:
                stamp.append(None)
        return tuple(stamp)

    def get(self) -> Explorer:
        now = time.monotonic()
        if now - self._checked < self.check_every or not self._lock.acquire(blocking=False):
            return self.current
        try:
            self._checked = now
            stamp = self._build_stamp()
            if stamp != self._stamp:
                try:
                    self.current, self._stamp = Explorer(self.data_dir, self.library_root), stamp
                    log.warning(
                        "a new build of %s: the explorer reloaded it (%d tracks)",
                        self.data_dir,
                        len(self.current.index),
                    )
                except Exception as exc:  # noqa: BLE001 - broken: keep serving what we have (until the files change again)
                    self._stamp = stamp
                    log.warning("the explorer could not load the new build (%s); still serving the previous one", exc)
        finally:
            self._lock.release()
        return self.current
