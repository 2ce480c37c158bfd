"""Other performances of the same composition: key- and tempo-invariant harmonic sequences and
their alignment (Serra, Gómez, Herrera & Serra 2009, "Chroma binary similarity and local alignment
applied to cover song identification").

A track's **harmonic sequence** is its chroma averaged between beats (``librosa.util.sync``), each
beat's 12 values scaled to unit length: one column per beat, so a faster performance gives the same
sequence. It is a by-product of the 641-D extraction — the chroma and the onset envelope it already
computes, plus a beat tracking on that envelope — stored per content by the features pass
(``features.harmonic``: ``sequence_of_spectra``, ``SequenceStore``).

Two versions are compared in three steps:

1. **Transposition**: the optimal transposition index (OTI) — the shift of one track's global
   chroma profile (the mean of its sequence) that best matches the other's — is applied to the
   candidate, so a transposed performance lines up pitch class for pitch class.
2. **Cross-recurrence**: the beat pairs that are among each other's ``KNN_FRACTION`` closest
   chroma (mutual nearest neighbours, what ``librosa.segment.cross_similarity(mode="connectivity")``
   gives both ways, computed by one matrix product: ``cross_recurrence``), a binary matrix robust to
   timbre.
3. **Local alignment**: ``librosa.sequence.rqa`` (Smith-Waterman with gap penalties and knight
   moves, i.e. tempo ratios between 1/2 and 2) finds the longest stretch of shared harmony; its best
   score over ``sqrt`` of the shorter length is the version score (Qmax).

A library search first ranks every track by a cheap summary — the cosine of the OTI-aligned global
profiles plus that of a 2D Fourier-transform magnitude of the sequence (Bertin-Mahieux & Ellis
2011: the median over 32-beat windows of ``|fft2|``, invariant to transposition and to where in the
track a pattern falls; ``summary``) — and aligns only the best ``aligned_count(N)`` of them (100,
or 2 % of a library above 5,000 tracks, at most 300): O(N x (144 + 204)) for the prefilter, then
O(aligned x beats^2) for the alignments (~5 ms each).
"""

from __future__ import annotations

import itertools
import logging
import math
from dataclasses import dataclass, field

import numpy as np

from music_pipeline.features.harmonic import SEQUENCE_VERSION, SequenceStore, sequence_of_signal

log = logging.getLogger(__name__)

# Alignment parameters (chosen on half of the benchmark's collections: docs/identity.md).
KNN_FRACTION = 0.2  # a beat's neighbours: this share of the other track's beats
GAP_ONSET, GAP_EXTEND = 1.0, 1.0
# tracks aligned per query, best prefilter scores first: PREFILTER, or PREFILTER_SHARE of a larger
# library (a version's rank in the prefilter grows with the library), at most PREFILTER_MAX
PREFILTER, PREFILTER_SHARE, PREFILTER_MAX = 100, 0.02, 300
FTM_BEATS, FTM_HOP = 32, 8  # the 2D-FTM summary: windows of beats and their hop
MIN_BEATS = 8  # a shorter sequence matches nothing
PACKED_VERSION = f"{SEQUENCE_VERSION}-p1"  # the packed table: the sequences' version and its own


def profile(seq: np.ndarray) -> np.ndarray:
    """The global chroma profile of a sequence (its mean column, unit length)."""
    p = np.asarray(seq, dtype=np.float32).mean(axis=1)
    n = np.linalg.norm(p)
    return p / n if n > 1e-9 else p


def summary(seq: np.ndarray) -> np.ndarray:
    """(12 x (FTM_BEATS // 2 + 1),) float32, unit length: the median 2D Fourier magnitude of the
    sequence's FTM_BEATS-beat windows, square-rooted and centred (the prefilter's second cue)."""
    s = np.asarray(seq, dtype=np.float32)
    if s.shape[1] < FTM_BEATS:
        s = np.pad(s, ((0, 0), (0, FTM_BEATS - s.shape[1])), mode="wrap") if s.shape[1] else np.zeros((12, FTM_BEATS))
    windows = np.lib.stride_tricks.sliding_window_view(s, FTM_BEATS, axis=1)[:, ::FTM_HOP]  # (12, w, FTM_BEATS)
    mags = np.abs(np.fft.fft2(windows.transpose(1, 0, 2)))  # (w, 12, FTM_BEATS)
    v = np.sqrt(np.median(mags, axis=0)[:, : FTM_BEATS // 2 + 1]).ravel()
    v = v - v.mean()
    n = np.linalg.norm(v)
    return (v / n if n > 1e-9 else v).astype(np.float32)


def oti(query_profile: np.ndarray, profiles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(best shift, cosine at that shift) of each row of ``profiles`` (N, 12) against the query:
    ``np.roll(candidate, shift)`` lines the candidate up with the query."""
    rolled = np.stack([np.roll(query_profile, -k) for k in range(12)])  # (12 shifts, 12)
    sims = profiles @ rolled.T  # sims[i, k] = <roll(profiles[i], k), query>
    best = sims.argmax(axis=1)
    return best, sims[np.arange(len(profiles)), best]


def cross_recurrence(query: np.ndarray, candidate: np.ndarray) -> np.ndarray:
    """(m, n) binary cross-recurrence of unit-column sequences (12, n) and (12, m): 1 where a beat
    pair is among each other's ``KNN_FRACTION`` nearest by cosine (mutual nearest neighbours, as
    ``librosa.segment.cross_similarity(mode="connectivity")`` both ways, in one matrix product
    instead of two neighbour searches: ~2 ms instead of ~160 ms for 300 x 300 beats)."""
    sim = candidate.T @ query  # (m, n)
    m, n = sim.shape
    k = max(2, round(KNN_FRACTION * min(n, m)))
    col = -np.partition(-sim, min(k, m) - 1, axis=0)[min(k, m) - 1]  # k-th best of each query beat
    row = -np.partition(-sim, min(k, n) - 1, axis=1)[:, min(k, n) - 1]
    return ((sim >= col[None, :]) & (sim >= row[:, None])).astype(np.float64)


def qmax(query: np.ndarray, candidate: np.ndarray, shift: int | None = None) -> float:
    """The version score of two sequences (12, n) and (12, m): the best local alignment of their
    binary cross-recurrence after transposing the candidate by its OTI, over sqrt(min(n, m))."""
    import librosa

    q = np.asarray(query, dtype=np.float32)
    c = np.asarray(candidate, dtype=np.float32)
    if q.shape[1] < MIN_BEATS or c.shape[1] < MIN_BEATS:
        return 0.0
    if shift is None:
        shift = int(oti(profile(q), profile(c)[None])[0][0])
    c = np.roll(c, shift, axis=0)
    xsim = cross_recurrence(q, c)
    score = librosa.sequence.rqa(xsim, gap_onset=GAP_ONSET, gap_extend=GAP_EXTEND, knight_moves=True, backtrack=False)
    return float(score.max() / np.sqrt(min(q.shape[1], c.shape[1])))


def aligned_count(n_tracks: int) -> int:
    """How many candidates a query aligns in a library of ``n_tracks``."""
    return min(PREFILTER_MAX, max(PREFILTER, math.ceil(PREFILTER_SHARE * n_tracks)))


@dataclass
class Ranked:
    index: int  # row of the candidates
    score: float


def rank_versions(
    query: np.ndarray,
    sequences: list[np.ndarray],
    profiles: np.ndarray,
    summaries: np.ndarray,
    n: int = 10,
    exclude: set[int] | frozenset = frozenset(),
    prefilter: int | None = None,
) -> list[Ranked]:
    """The ``n`` best versions of ``query`` among ``sequences`` (with their ``profiles`` (N, 12)
    and ``summaries``), best first; rows in ``exclude`` (the query itself, its duplicates) are never
    offered. ``prefilter``: how many to align (default: ``aligned_count``)."""
    if not len(sequences):
        return []
    prefilter = aligned_count(len(sequences)) if prefilter is None else prefilter
    shifts, sims = oti(profile(query), profiles)
    cheap = sims + summaries @ summary(query)
    order = [i for i in np.argsort(-cheap, kind="stable") if i not in exclude][:prefilter]
    scored = [Ranked(int(i), qmax(query, sequences[i], int(shifts[i]))) for i in order]
    scored.sort(key=lambda r: (-r.score, r.index))
    return scored[:n]


# -- the library's sequences -------------------------------------------------------------------
class VersionsNotBuilt(Exception):
    pass


class QueryError(Exception):
    """A query that names no library track and no readable audio file (the message names it)."""


@dataclass
class SequenceLibrary:
    """Every stored sequence of the library, packed: one entry per distinct content, and the
    tracks holding each content (``<data>/tables/harmonic_sequences.npz``)."""

    hashes: np.ndarray  # per content
    sequences: list[np.ndarray]  # per content, (12, beats) float16
    profiles: np.ndarray  # (contents, 12)
    summaries: np.ndarray  # (contents, 204)
    keys: np.ndarray  # per track
    relpaths: np.ndarray
    content_of: np.ndarray
    missing: int = 0  # scanned tracks without a stored sequence when this was built
    # content -> the other contents holding the same recording (the build's duplicate groups; not packed)
    same_recording: dict[int, set[int]] = field(default_factory=dict)

    def with_duplicates(self, table) -> SequenceLibrary:
        """This library knowing the duplicate groups of ``table`` (``identity.duplicates``; None: none)."""
        if table is None or not len(table):
            return self
        content = dict(zip(self.keys.astype(str), self.content_of.astype(int), strict=True))
        same: dict[int, set[int]] = {}
        for _, g in table.groupby("group"):
            members = {content[k] for k in g["track"].astype(str) if k in content}
            for c in members:
                same.setdefault(c, set()).update(members - {c})
        self.same_recording = same
        return self

    def to_arrays(self) -> dict:
        lengths = np.array([s.shape[1] for s in self.sequences], dtype=np.int64)
        packed = np.concatenate(self.sequences, axis=1) if self.sequences else np.zeros((12, 0), np.float16)
        return {
            "hashes": self.hashes,
            "packed": packed.astype(np.float16),
            "lengths": lengths,
            "profiles": self.profiles.astype(np.float32),
            "summaries": self.summaries.astype(np.float32),
            "keys": self.keys,
            "relpaths": self.relpaths,
            "content_of": self.content_of,
            "missing": np.int64(self.missing),
            "version": np.array(PACKED_VERSION),
        }

    @classmethod
    def from_arrays(cls, z) -> SequenceLibrary:
        bounds = np.concatenate([[0], np.cumsum(z["lengths"])])
        seqs = [z["packed"][:, a:b] for a, b in itertools.pairwise(bounds)]
        named = ("hashes", "profiles", "summaries", "keys", "relpaths", "content_of")
        return cls(sequences=seqs, missing=int(z["missing"]), **{k: z[k] for k in named})


def _scanned(data_dir):
    from music_pipeline.artifacts import read_parquet
    from music_pipeline.layout import DataLayout

    path = DataLayout(data_dir).manifest_path
    if not path.is_file():
        raise VersionsNotBuilt(f"no library scan in {data_dir} ({path} is missing): run `music-pipeline build` first")
    t = read_parquet(path, columns=["key", "relpath", "content_hash"])
    return t[t["content_hash"].notna()].sort_values("key")


def build_library(data_dir) -> SequenceLibrary:
    """Pack the stored sequences of the scanned tracks and store them; tracks without one are
    counted in ``missing`` (the next build computes them)."""
    from music_pipeline.artifacts import write_npz
    from music_pipeline.layout import DataLayout

    store = SequenceStore(data_dir)
    available = store.hashes()
    contents: dict[str, int] = {}
    hashes, seqs, keys, relpaths, content_of, missing = [], [], [], [], [], 0
    for t in _scanned(data_dir).itertuples(index=False):
        h = t.content_hash
        if h not in contents:
            try:
                if h not in available:
                    raise FileNotFoundError(h)
                seq = store.load(h)
            except Exception as exc:  # noqa: BLE001 - missing or damaged: computed again by the next build
                if h in available:
                    log.warning("stored harmonic sequence of %s unreadable (%s): removed", t.relpath, exc)
                    store.forget(h)
                missing += 1
                continue
            contents[h] = len(seqs)
            hashes.append(h)
            seqs.append(seq)
        keys.append(t.key)
        relpaths.append(t.relpath)
        content_of.append(contents[h])
    lib = SequenceLibrary(
        np.array(hashes, dtype=str),
        seqs,
        np.stack([profile(s) for s in seqs]) if seqs else np.zeros((0, 12), np.float32),
        np.stack([summary(s) for s in seqs]) if seqs else np.zeros((0, 12 * (FTM_BEATS // 2 + 1)), np.float32),
        np.array(keys, dtype=str),
        np.array(relpaths, dtype=str),
        np.array(content_of, dtype=np.int64),
        missing,
    )
    write_npz(DataLayout(data_dir).versions_index_path, lib.to_arrays(), compress=False)
    return lib


def load_library(data_dir) -> SequenceLibrary:
    """The packed sequences; packed again first when missing, of another version, older than the
    scan, or packed while some tracks had no sequence yet."""
    from music_pipeline.artifacts import read_npz
    from music_pipeline.identity.duplicates import read_duplicates
    from music_pipeline.layout import DataLayout

    layout = DataLayout(data_dir)
    path = layout.versions_index_path
    fresh = path.is_file() and not (
        layout.manifest_path.is_file() and layout.manifest_path.stat().st_mtime > path.stat().st_mtime
    )
    if fresh:
        z = read_npz(path)
        if str(z["version"]) == PACKED_VERSION and int(z["missing"]) == 0:
            return SequenceLibrary.from_arrays(z).with_duplicates(read_duplicates(data_dir))
    lib = build_library(data_dir)
    if not len(lib.keys):
        raise VersionsNotBuilt(f"no analysed tracks in {data_dir}: run `music-pipeline build` first")
    return lib.with_duplicates(read_duplicates(data_dir))


@dataclass
class Query:
    sequence: np.ndarray
    content: int | None  # the library content it is (excluded from its results), or None


def resolve(text: str, lib: SequenceLibrary, files: bool = True) -> Query:
    """A track key, a path inside the library, or an audio file (a library track when its bytes
    are one; else decoded and its sequence computed here). ``files=False``: library tracks only,
    the text is never looked up on the file system (what a network client sends). ``QueryError``
    naming ``text``."""
    from pathlib import Path

    hit = np.flatnonzero((lib.keys == text) | (lib.relpaths == text.replace("\\", "/")))
    if len(hit):
        c = int(lib.content_of[hit[0]])
        return Query(lib.sequences[c], c)
    if not files:
        raise QueryError(f"{text}: no track with this key or path has a harmonic sequence (yet)")
    p = Path(text).expanduser()
    if not p.is_file():
        raise QueryError(f"{text}: not a track key, a library path or an audio file")
    from music_pipeline.audio.decode import AudioError, decode
    from music_pipeline.audio.scan import content_hash

    try:
        h = content_hash(p)
    except OSError as exc:
        raise QueryError(f"{text}: cannot be read ({exc.strerror or exc})") from exc
    same = np.flatnonzero(lib.hashes == h)
    if len(same):
        return Query(lib.sequences[int(same[0])], int(same[0]))
    try:
        a = decode(p)
    except AudioError as exc:
        raise QueryError(str(exc)) from exc
    return Query(sequence_of_signal(a.y, a.sr), None)


def find_versions(text: str, lib: SequenceLibrary, n: int = 10, files: bool = True) -> dict:
    """``{"query": text, "results": [{"track", "path", "score"}]}``: the ``n`` best other
    performances of the query (``resolve``) among the library's tracks (never the query itself
    nor a file with its exact bytes, nor another copy of its recording)."""
    q = resolve(text, lib, files)
    exclude = {q.content, *lib.same_recording.get(q.content, ())} if q.content is not None else set()
    ranked = rank_versions(q.sequence, lib.sequences, lib.profiles, lib.summaries, len(lib.sequences), exclude)
    results = []
    for r in ranked:
        for i in np.flatnonzero(lib.content_of == r.index):
            results.append({"track": str(lib.keys[i]), "path": str(lib.relpaths[i]), "score": round(r.score, 3)})
        if len(results) >= n:
            break
    return {"query": text, "results": results[:n]}
