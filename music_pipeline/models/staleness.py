"""When a library model is worth retraining.

A model is **stale** when
- it was never trained (or its training record is unreadable),
- its code version changed since it was trained,
- the tracks it learns from changed by more than ``max_share`` (default 10 %) since it was
  trained: added, removed, relabelled or re-levelled tracks, over the size of its training set, or
- its schedule says so (``nightly_rebuild`` retrains every model; ``build --retrain`` too).

Otherwise the deployed model keeps serving: new tracks are scored, classified and searchable with
it at once, and retraining waits until enough has changed to pay for it.

What each model learns from is, per track content hash, what it learns about that track
(``training_set``): the label for the genre models, the PDI level for the difficulty CNN, nothing
for the map, and for the listening model each event of the listening log (by event id) — so a relabelled track counts as changed, like an added or removed one. After
training, the asset saves it with its code version and time (``record_training``) as
``<data>/models/state/<model>.json``::

    {"format": 1, "model", "code_version", "trained_at", "tracks": {content_hash: label/level/""}}

Nothing here imports Dagster.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from music_pipeline import settings
from music_pipeline.artifacts import read_json, read_parquet, write_json
from music_pipeline.layout import DataLayout

STATE_FORMAT = 1

GENRE_MODELS = ("genre_classifier", "genre_comparison")
LEVEL_MODELS = ("difficulty_cnn",)
LIBRARY_MODELS = ("embedding_map",)
# learns from listening events rather than tracks: its "training tracks" are the event ids, so
# "changed" counts events that arrived since it was trained (listening/history.py)
EVENT_MODELS = ("listening_model",)


def training_set(model: str, layout: DataLayout) -> dict[str, str]:
    """What ``model`` learns from, {content hash: what it learns about it}, from the library
    tables as they are now."""
    if model in EVENT_MODELS:
        from music_pipeline.listening.history import EventLog, HistoryError

        try:
            return {e.id: "" for e in EventLog(layout.root).read().events}
        except HistoryError:  # a remote data directory keeps no listening log
            return {}
    if model in LEVEL_MODELS:
        path = layout.difficulty_table_path
        if not path.exists():
            return {}
        t = read_parquet(path, columns=["content_hash", "level"])
        return {str(h): str(lv) for h, lv in zip(t["content_hash"], t["level"], strict=True)}
    if not layout.embeddings_path.exists():
        return {}
    t = read_parquet(layout.embeddings_path, columns=["content_hash", "label"])
    if model in GENRE_MODELS:
        t = t[t["label"].notna() & (t["label"].astype(str) != "")]
        return {str(h): str(lab) for h, lab in zip(t["content_hash"], t["label"], strict=True)}
    if model in LIBRARY_MODELS:
        return {str(h): "" for h in t["content_hash"]}
    raise ValueError(f"no training set is defined for {model!r}")


def changed_tracks(before: dict[str, str], now: dict[str, str]) -> int:
    """Tracks added, removed, or whose label/level changed."""
    return len(before.keys() ^ now.keys()) + sum(before[h] != now[h] for h in before.keys() & now.keys())


@dataclass(frozen=True)
class Verdict:
    stale: bool
    why: str
    changed: int = 0  # tracks added, removed or changed since the last training
    trained_on: int = 0

    def to_metadata(self) -> dict:
        return {"stale": self.stale, "why": self.why, "tracks_changed": self.changed, "trained_on": self.trained_on}


def record_training(
    layout: DataLayout, model: str, code_version: str, tracks: dict[str, str] | None = None, now: datetime | None = None
) -> None:
    """Save what ``model`` was just trained on (``tracks`` defaults to its training set now)."""
    when = (now or datetime.now(UTC)).isoformat(timespec="seconds")
    tracks = training_set(model, layout) if tracks is None else dict(tracks)
    write_json(
        layout.training_state_path(model),
        {
            "format": STATE_FORMAT,
            "model": model,
            "code_version": str(code_version),
            "trained_at": when,
            "tracks": tracks,
        },
    )


def verdict(
    layout: DataLayout,
    model: str,
    code_version: str,
    max_share: float | None = None,
    current: dict[str, str] | None = None,
) -> Verdict:
    """Is ``model`` stale against the library as it is now? (see the module docstring)"""
    share_limit = settings.retrain_share() if max_share is None else max_share
    path = layout.training_state_path(model)
    try:
        state = read_json(path) if path.exists() else None
    except (OSError, ValueError):
        state = None
    if not state or state.get("format") != STATE_FORMAT:
        return Verdict(True, "never trained on this data directory (no training record)")
    if str(state.get("code_version")) != str(code_version):
        return Verdict(True, f"its code changed (version {state.get('code_version')} → {code_version})")
    before = dict(state.get("tracks") or {})
    now = training_set(model, layout) if current is None else current
    changed = changed_tracks(before, now)
    base = max(1, len(before))
    share = changed / base
    if not now:
        return Verdict(False, "nothing to train on now; the last model stays", changed, len(before))
    if share > share_limit:
        return Verdict(
            True,
            f"{changed} of its {len(before)} training tracks changed ({share:.0%} > {share_limit:.0%})",
            changed,
            len(before),
        )
    return Verdict(
        False,
        f"{changed} of its {len(before)} training tracks changed ({share:.1%} ≤ {share_limit:.0%}): the deployed model serves new tracks",
        changed,
        len(before),
    )
