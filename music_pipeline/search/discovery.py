"""The one query API over the saved similarity index (used by the CLI and the assets).

A query TRACK is, in this order: a track key (the partition key), a path inside the library
(relative, or absolute under the library root), an audio file (a copy of a library track is
recognised by its content hash; anything else is embedded on the fly with ``extract_features``
and projected with the saved scaler), or a unique case-insensitive substring of a title (the file
name without extension). Results never contain the query track itself, nor a copy of it (the same
recording stored again: the build's ``duplicate_groups`` table), and never two copies of one
recording; every result carries its musical key and Camelot code.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from music_pipeline.artifacts import artifact_path, read_table
from music_pipeline.features.embedding import FEATURE_NAMES
from music_pipeline.harmony.camelot import mix_mask, parse_key
from music_pipeline.layout import DataLayout
from music_pipeline.search.compare import Comparison, compare_standardised
from music_pipeline.search.index import TrackIndex
from music_pipeline.search.mmr import mmr
from music_pipeline.search.path import DEFAULT_SMOOTH, path_walk, progress
from music_pipeline.search.radio import first_of_each, radio_walk, window_mask

log = logging.getLogger(__name__)

NO_KEY = {"key": None, "camelot": None, "key_confidence": None}
MMR_POOL_FACTOR = 5  # MMR re-ranks this many times n nearest candidates (at least MMR_POOL_MIN)
MMR_POOL_MIN = 50


class QueryError(ValueError):
    """The query cannot be resolved to one track (message says why and what would)."""


class TrackNotFound(QueryError):
    """Nothing in the library matches the query."""


class AmbiguousTrack(QueryError):
    """The query matches several tracks."""


AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".m4a", ".aac", ".wma", ".mp4")


def looks_like_a_path(text: str) -> bool:
    """A query that names a file rather than part of a title: has a folder or an audio suffix."""
    t = text.strip()
    return "/" in t or "\\" in t or t.startswith(("~", ".")) or t.lower().endswith(AUDIO_SUFFIXES)


def title_of(relpath: str) -> str:
    return PurePosixPath(relpath).stem


@dataclass
class ResolvedTrack:
    text: str  # what the user typed
    vector: np.ndarray  # unit vector in the index space
    path: str
    key: str | None = None
    relpath: str | None = None
    label: str | None = None
    position: int | None = None  # row in the index; None when outside the library
    raw: np.ndarray | None = None  # raw 641 features when already known

    @property
    def external(self) -> bool:
        return self.position is None

    def as_dict(self) -> dict:
        return {
            "input": self.text,
            "track": self.key,
            "path": self.path,
            "relpath": self.relpath,
            "label": self.label,
            "external": self.external,
        }


@dataclass
class Hit:
    track: str
    path: str
    relpath: str
    label: str | None
    score: float
    extra: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {
            "track": self.track,
            "path": self.path,
            "relpath": self.relpath,
            "label": self.label,
            "score": self.score,
            **self.extra,
        }


class Discovery:
    def __init__(self, index: TrackIndex, data_dir: str | Path | None = None, library_root: str | Path | None = None):
        self.index = index
        self.data_dir = artifact_path(data_dir) if data_dir else None
        root = library_root or index.info.get("library_root")
        self.library_root = Path(root) if root else None
        self._by_relpath = {r: i for i, r in enumerate(index.tracks["relpath"])}
        self._by_hash = {h: i for i, h in enumerate(index.tracks["content_hash"]) if isinstance(h, str)}
        # key facts, read on demand: every track's (``track_keys``), or some answers' (``with_keys``)
        self._track_keys: list[dict] | None = None
        self._some_keys: dict[int, dict] = {}
        self._keys_missing = False  # no embeddings table to read them from: said once

    @classmethod
    def open(cls, data_dir: str | Path, library_root: str | Path | None = None) -> Discovery:
        """Load the saved index of this data directory (raises ``IndexNotBuilt`` when missing)."""
        return cls(TrackIndex.load(DataLayout(data_dir).similarity_dir), data_dir, library_root)

    # -- resolving queries ----------------------------------------------------------------------
    def _track(self, text: str, pos: int) -> ResolvedTrack:
        row = self.index.tracks.iloc[pos]
        return ResolvedTrack(
            text, self.index.vector(pos), self.path_of(row["relpath"]), row["key"], row["relpath"], row["label"], pos
        )

    def path_of(self, relpath: str) -> str:
        return str(self.library_root / relpath) if self.library_root else relpath

    def resolve(self, text: str, files: bool = True) -> ResolvedTrack:
        """``files=False``: library tracks only (key, library path, title); the text is never
        looked up on the file system (what a network client sends)."""
        text = str(text).strip()
        if not text:
            raise QueryError("empty track query")
        pos = self.index.position(text)
        if pos is None:
            pos = self._by_relpath.get(PurePosixPath(text.replace("\\", "/")).as_posix())
        if pos is not None:
            return self._track(text, pos)
        p = Path(text).expanduser() if files else None
        if p is not None and p.is_file():
            return self._resolve_file(text, p)
        try:
            return self._resolve_title(text)
        except TrackNotFound:
            if p is not None and looks_like_a_path(
                text
            ):  # a file was meant: say that it is missing, not that no title matches
                what = "is a folder, not an audio file" if p.is_dir() else "file does not exist"
                raise TrackNotFound(f"{text}: {what} (and no track of the library has that path)") from None
            raise

    def _resolve_file(self, text: str, p: Path) -> ResolvedTrack:
        if self.library_root:
            try:
                rel = p.resolve().relative_to(self.library_root.resolve()).as_posix()
            except ValueError:
                rel = None
            if rel in self._by_relpath:
                return self._track(text, self._by_relpath[rel])
        from music_pipeline.audio.scan import content_hash

        h = content_hash(p)
        if h in self._by_hash:  # the same audio as a library track: it is that track
            return self._track(text, self._by_hash[h])
        from music_pipeline.audio.decode import AudioError, SharedDecode
        from music_pipeline.features.extract import extract_features

        audio = SharedDecode(p)  # one read for both embeddings
        try:
            raw = extract_features(p, audio=audio).embedding
            learned = None
            if self.index.transform.needs_learned:  # the space reads the pretrained network's embedding too
                from music_pipeline.learned.store import compute_learned

                learned = compute_learned(p, audio=audio).embedding()[None, :]
        except AudioError as exc:
            raise QueryError(str(exc)) from exc
        return ResolvedTrack(
            text, self.index.transform.project(np.atleast_2d(raw), learned)[0], str(p.resolve()), raw=raw
        )

    def _resolve_title(self, text: str) -> ResolvedTrack:
        needle = text.lower()
        relpaths = self.index.tracks["relpath"].tolist()
        matches = [i for i, r in enumerate(relpaths) if needle in title_of(r).lower()]
        if not matches:
            matches = [i for i, r in enumerate(relpaths) if needle in r.lower()]
        if len(matches) > 1:
            exact = [i for i in matches if title_of(relpaths[i]).lower() == needle]
            matches = exact if len(exact) == 1 else matches
        if len(matches) == 1:
            return self._track(text, matches[0])
        if not matches:
            raise TrackNotFound(
                f"no track matches {text!r} (not a track key, a library path, an audio file or part of a title)"
            )
        shown = "\n  ".join(relpaths[i] for i in matches[:10])
        more = f"\n  … and {len(matches) - 10} more" if len(matches) > 10 else ""
        raise AmbiguousTrack(f"{text!r} matches {len(matches)} tracks; be more specific:\n  {shown}{more}")

    def raw_features(self, q: ResolvedTrack) -> np.ndarray:
        """The raw 641 features of a resolved track (library tracks: from the embeddings table)."""
        if q.raw is not None:
            return q.raw
        path = DataLayout(self.data_dir).embeddings_path if self.data_dir else None
        if path is None or not path.is_file():
            raise QueryError("the embeddings table is not available to compare features")
        table = read_table(path, columns=FEATURE_NAMES, filters=[("key", "=", q.key)])
        if table.num_rows != 1:
            raise QueryError(f"track {q.key} is in the index but not in the embeddings table: rebuild")
        q.raw = table.to_pandas().to_numpy(dtype=np.float64)[0]
        return q.raw

    # -- queries --------------------------------------------------------------------------------
    def _hit(self, pos: int, score: float, **extra) -> Hit:
        row = self.index.tracks.iloc[int(pos)]
        facts = {**self.key_facts(int(pos)), **extra}
        return Hit(row["key"], self.path_of(row["relpath"]), row["relpath"], row["label"], float(score), facts)

    def key_facts(self, pos: int) -> dict:
        """{"key", "camelot", "key_confidence"} of the track at ``pos`` (None values when the
        embeddings table is not there to read its chroma from): from ``track_keys`` once they are
        read, else from what ``with_keys`` read for this answer's tracks."""
        if self._track_keys is not None:
            return self._track_keys[pos]
        self.with_keys([pos])
        return self._some_keys.get(pos, NO_KEY)

    def with_keys(self, positions=None) -> None:
        """Read the key facts of ``positions`` in one go (an answer's tracks: a CLI query need not
        estimate the key of every track of the library); None: of every track (the explorer, once)."""
        if self._track_keys is not None or self._keys_missing:
            return
        missing = None if positions is None else sorted({int(p) for p in positions} - self._some_keys.keys())
        if missing == []:
            return
        try:
            if missing is None:
                self.track_keys()
            else:
                self._some_keys.update(zip(missing, self._read_keys(missing), strict=True))
        except (QueryError, FileNotFoundError, KeyError) as exc:
            self._keys_missing = True  # said once per opened index, not once per hit
            log.info("results without keys: %s", exc)

    # -- duplicates -----------------------------------------------------------------------------
    def copies(self) -> np.ndarray:
        """Per index position: the number of its duplicate group (tracks holding the same
        recording, from the build's ``duplicate_groups`` table), -1 for a track stored once or
        when the table is missing or stale. Read once per opened index."""
        if getattr(self, "_copies", None) is None:
            from music_pipeline.identity.duplicates import group_per_track, read_duplicates

            table = read_duplicates(self.data_dir) if self.data_dir is not None else None
            self._duplicate_rows = table
            self._copies = group_per_track(table, self.index.tracks["key"])
        return self._copies

    def duplicate_table(self):
        """The build's duplicate_groups table as read by ``copies`` (None: missing or stale)."""
        self.copies()
        return self._duplicate_rows

    def copies_of(self, pos: int | None) -> list[int]:
        """Positions of the other tracks holding the recording of the track at ``pos``."""
        if pos is None:
            return []
        same = self.copies()
        if same[pos] < 0:
            return []
        return [int(p) for p in np.flatnonzero(same == same[pos]) if p != pos]

    def duplicates_of(self, pos: int) -> list[dict]:
        """``[{"track", "path", "relpath", "kind"}]``: the other copies of the track at ``pos``."""
        same = self.copies()
        if same[pos] < 0:
            return []
        rows = self._duplicate_rows
        kind = str(rows.loc[rows["group"] == same[pos], "kind"].iloc[0])
        out = []
        for p in self.copies_of(pos):
            row = self.index.tracks.iloc[p]
            out.append(
                {"track": row["key"], "path": self.path_of(row["relpath"]), "relpath": row["relpath"], "kind": kind}
            )
        return out

    def _nearest(self, q: ResolvedTrack, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest positions to ``q`` and their cosines: never ``q`` nor a copy of it,
        and one track of each duplicate group (the nearest)."""
        exclude = None if q.position is None else np.array([q.position])
        same = self.copies()
        skip = set(self.copies_of(q.position))
        fetch = k if not (same >= 0).any() else 2 * k + len(skip)
        while True:
            idx, scores = self.index.index.search(q.vector, fetch, exclude=exclude)
            keep = idx[0] >= 0
            idx, scores = idx[0][keep], scores[0][keep]
            ok = np.array([int(i) not in skip for i in idx], dtype=bool) & first_of_each(same[idx])
            if ok.sum() >= k or len(idx) < fetch or fetch >= len(same):
                return idx[ok][:k], scores[ok][:k]
            fetch = min(len(same), fetch * 2)

    def similar(
        self, query: str | ResolvedTrack, n: int = 10, diverse: float | None = None
    ) -> tuple[ResolvedTrack, list[Hit]]:
        """Top-n by cosine, or with ``diverse=λ`` MMR over the nearest candidates."""
        q = query if isinstance(query, ResolvedTrack) else self.resolve(query)
        if n <= 0:
            return q, []
        k = n if diverse is None else max(MMR_POOL_MIN, MMR_POOL_FACTOR * n)
        idx, scores = self._nearest(q, k)
        self.with_keys(idx[: n if diverse is None else k])
        if diverse is None:
            return q, [self._hit(i, s) for i, s in zip(idx, scores, strict=True)]
        order, mmr_scores = mmr(scores, np.asarray(self.index.index.vectors[idx]), n, diverse)
        return q, [self._hit(idx[o], scores[o], mmr_score=float(m)) for o, m in zip(order, mmr_scores, strict=True)]

    def compare(
        self, a: str | ResolvedTrack, b: str | ResolvedTrack
    ) -> tuple[ResolvedTrack, ResolvedTrack, Comparison]:
        qa = a if isinstance(a, ResolvedTrack) else self.resolve(a)
        qb = b if isinstance(b, ResolvedTrack) else self.resolve(b)
        t = self.index.transform
        za, zb = t.standardise(self.raw_features(qa)), t.standardise(self.raw_features(qb))
        cosine = float(np.dot(qa.vector, qb.vector))
        return qa, qb, compare_standardised(za, zb, cosine, self.index.pair_quantiles)

    def energy_percentiles(self, rms: np.ndarray) -> np.ndarray:
        """rms_mean as its percentile in the library (0 = quietest track, 1 = loudest)."""
        lib = np.sort(self.index.tracks["rms_mean"].to_numpy(dtype=np.float64))
        return np.searchsorted(lib, np.asarray(rms, dtype=np.float64), side="right") / max(1, len(lib))

    def radio(
        self,
        seed: str | ResolvedTrack,
        length: int = 20,
        bpm: float | None = None,
        bpm_tolerance: float = 8.0,
        energy: float | None = None,
        energy_tolerance: float = 0.15,
        pull: float = 0.5,
        harmonic: bool = False,
    ) -> tuple[ResolvedTrack, list[Hit]]:
        """A walk of ``length`` tracks from the seed. ``bpm``: tempo target (tempo_bpm ± tolerance);
        ``energy``: target percentile of rms_mean in the library (0–1, ± tolerance); ``harmonic``:
        each step Camelot-compatible with the one before and within ±6 % of its tempo (half/double
        time allowed), keys from the stored chroma (``harmony``)."""
        q = seed if isinstance(seed, ResolvedTrack) else self.resolve(seed)
        tracks = self.index.tracks
        tempo = tracks["tempo_bpm"].to_numpy(dtype=np.float64)
        energy_pct = self.energy_percentiles(tracks["rms_mean"].to_numpy(dtype=np.float64))
        allowed = window_mask(tempo, bpm, bpm_tolerance) & window_mask(energy_pct, energy, energy_tolerance)

        def neighbours(vec: np.ndarray, k: int) -> np.ndarray:
            return self.index.index.search(vec, k)[0][0]

        exclude = [] if q.position is None else [q.position, *self.copies_of(q.position)]
        step_allowed = self._harmonic_steps(q, tempo) if harmonic else None
        pos, scores = radio_walk(
            self.index.index.vectors,
            q.vector,
            length,
            allowed,
            exclude,
            neighbours,
            pull,
            step_allowed=step_allowed,
            same=self.copies(),
        )
        hits = []
        self.with_keys(pos)
        for p, s in zip(pos, scores, strict=True):
            extra = {
                "seed_similarity": float(self.index.vector(p) @ q.vector),
                "tempo_bpm": float(tempo[p]),
                "rms_mean": float(tracks["rms_mean"].iloc[p]),
                "energy": float(energy_pct[p]),
            }
            hits.append(self._hit(p, s, **extra))
        return q, hits

    def track_keys(self) -> list[dict]:
        """Per index position: {"key": "A minor", "camelot": "8A", "key_confidence"} from the stored
        chroma means (empty values for a track the embeddings table lacks). Read once per opened
        index, as ``find``'s rows: each harmonic radio or path asks for all of them."""
        if self._track_keys is None:
            self._track_keys = self._read_keys(None)
        return self._track_keys

    def _read_keys(self, positions: list[int] | None) -> list[dict]:
        """The key facts of ``positions`` (None: of every track), in that order: one read of their
        chroma means from the embeddings table."""
        from music_pipeline.harmony.library import library_keys

        if self.data_dir is None:
            raise QueryError("no data directory: the tracks' keys come from its embeddings table")
        keys = self.index.tracks["key"] if positions is None else self.index.tracks["key"].iloc[positions]
        table = library_keys(self.data_dir, None if positions is None else list(keys))
        t = table.drop_duplicates("key").set_index("key").reindex(keys)  # rows the table lacks: NaN
        out = []
        for name, camelot, conf in zip(t["music_key"], t["camelot"], t["key_confidence"], strict=True):
            ok = isinstance(name, str)
            out.append(
                {
                    "key": name if ok else None,
                    "camelot": camelot if ok else None,
                    "key_confidence": float(conf) if ok else None,
                }
            )
        return out

    def _harmonic_steps(self, q: ResolvedTrack, tempo: np.ndarray, end: ResolvedTrack | None = None):
        """step_allowed for radio_walk / path_walk (``--harmonic``); with ``end`` (the path's B)
        the last pick must also mix into it."""
        from music_pipeline.harmony.library import key_of_features

        keys = self.track_keys()
        parsed = [parse_key(k["camelot"]) if k["camelot"] else None for k in keys]

        def key_and_tempo(r: ResolvedTrack):
            raw = self.raw_features(r)
            return key_of_features(raw).key, float(raw[FEATURE_NAMES.index("tempo_bpm")])

        seed_key, seed_tempo = key_and_tempo(q)
        into_end = None if end is None else mix_mask(parsed, tempo, *key_and_tempo(end))

        def step_allowed(prev: int | None, last: bool = False) -> np.ndarray:
            if prev is None:
                mask = mix_mask(parsed, tempo, seed_key, seed_tempo)
            else:
                mask = mix_mask(parsed, tempo, parsed[prev], float(tempo[prev]))
            return mask & into_end if last and into_end is not None else mask

        return step_allowed

    def path(
        self,
        a: str | ResolvedTrack,
        b: str | ResolvedTrack,
        length: int = 10,
        smooth: float | None = None,
        harmonic: bool = False,
    ) -> tuple[ResolvedTrack, ResolvedTrack, list[Hit]]:
        """``length`` tracks leading smoothly from A to B (``search.path``): A and B not included.
        ``harmonic``: a chain in which each track mixes into the next as in ``radio`` (A into the
        first; the last into B when the library offers one), shorter when none may follow."""

        qa = a if isinstance(a, ResolvedTrack) else self.resolve(a)
        qb = b if isinstance(b, ResolvedTrack) else self.resolve(b)

        def neighbours(vec: np.ndarray, k: int) -> np.ndarray:
            return self.index.index.search(vec, k)[0][0]

        exclude = [p for q in (qa, qb) if q.position is not None for p in (q.position, *self.copies_of(q.position))]
        tempo = self.index.tracks["tempo_bpm"].to_numpy(dtype=np.float64)
        step_allowed = self._harmonic_steps(qa, tempo, end=qb) if harmonic else None
        pos, scores, ts = path_walk(
            self.index.index.vectors,
            qa.vector,
            qb.vector,
            length,
            exclude,
            neighbours,
            DEFAULT_SMOOTH if smooth is None else smooth,
            step_allowed=step_allowed,
            same=self.copies(),
        )
        hits = []
        self.with_keys(pos)
        for p, s, t in zip(pos, scores, ts, strict=True):
            v = self.index.vector(p)
            along = float(progress(v, qa.vector, qb.vector)[0])
            extra = {"tempo_bpm": float(tempo[p])} if harmonic else {}
            hits.append(
                self._hit(
                    p,
                    s,
                    t=float(t),
                    progress=along,
                    from_similarity=float(v @ qa.vector),
                    to_similarity=float(v @ qb.vector),
                    **extra,
                )
            )
        return qa, qb, hits

    def find(self, text: str, limit: int = 20) -> list[int]:
        """Positions of tracks whose title, key, label or library path contains ``text`` (case-
        insensitive): title prefix matches first, then title, key, label, path matches; each
        group in title order. For search-as-you-type; an empty text finds nothing."""
        needle = str(text).strip().lower()
        if not needle or limit <= 0:
            return []
        if getattr(self, "_find_rows", None) is None:  # built on first use: lower-cased fields in title order
            t = self.index.tracks
            rows = [
                (title_of(r).lower(), str(k).lower(), (lab or "").lower(), str(r).lower())
                for k, r, lab in zip(t["key"], t["relpath"], t["label"], strict=True)
            ]
            order = sorted(range(len(rows)), key=lambda i: (rows[i][0], i))
            self._find_rows = [(i, *rows[i], "\0".join(rows[i])) for i in order]
        found = []
        for i, title, key, label, rel, joined in self._find_rows:
            if needle in joined:
                fields = (title.startswith(needle), needle in title, needle in key, needle in label, needle in rel)
                if any(fields):  # (a match across the joining NUL is none)
                    found.append((fields.index(True), len(found), i))
        return [i for _, _, i in sorted(found)[:limit]]
