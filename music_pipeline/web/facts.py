"""What the models say about a track — genre and difficulty — for the explorer.

The ONE place where the web app touches the genre and difficulty models: everything goes through
their public core APIs (``DifficultyModel.load(...).score`` / ``score_frame``; ``persistence.load_model``,
``predict_proba``, ``explain.tree_shap`` + ``explain.explain_track``), exactly as the
``difficulty`` and ``classify --explain`` commands use them. When those models change, this module
is what adapts. A model that is not built yet is not an error: its section says so and how to
build it.
"""

from __future__ import annotations

import logging
import threading
from functools import lru_cache

import numpy as np

from music_pipeline.artifacts import read_json, read_parquet
from music_pipeline.difficulty.pdi import DifficultyModel, explain, merge_descriptors
from music_pipeline.genre.data import HANDCRAFTED, LEARNED, TAGS
from music_pipeline.genre.serving import GenreService
from music_pipeline.layout import DataLayout
from music_pipeline.learned.store import LEARNED_NAMES, TAG_NAMES
from music_pipeline.learned.table import read_learned_table
from music_pipeline.notes.store import HEARD_COLUMNS, heard_of

log = logging.getLogger(__name__)

PUSHING_TOP = 3


def _unavailable(reason: str) -> dict:
    return {"available": False, "reason": reason}


class Facts:
    def __init__(self, data_dir):
        self.layout = DataLayout(data_dir)
        self._lock = threading.Lock()
        self._difficulty = None  # (model, {key: descriptor row}, {key: (level, pdi)}) once loaded
        self._difficulty_error: str | None = None
        self._genre = None  # (deployed, explainer or None, version name, status note)
        self._genre_error: str | None = None
        self._cv = None  # key -> out-of-fold row of genre_predictions.parquet
        # per instance: a class-level cache would keep a replaced explorer's models alive
        self._genre_cached = lru_cache(maxsize=1024)(self._genre_answer)

    # -- difficulty -----------------------------------------------------------------------------
    def _load_difficulty(self):
        with self._lock:
            if self._difficulty is None and self._difficulty_error is None:
                try:
                    model = DifficultyModel.load(self.layout.difficulty_dir)
                    # the PDI reads the note descriptors beside the audio ones, as the difficulty asset does
                    table = merge_descriptors(
                        read_parquet(self.layout.descriptors_table_path),
                        read_parquet(self.layout.note_descriptors_table_path),
                    )
                    frame = model.score_frame(table)
                    shown = list(model.names) + [c for c in HEARD_COLUMNS.values() if c in table.columns]
                    rows = {str(k): r for k, r in zip(table["key"], table[shown].to_dict("records"), strict=True)}
                    levels = {
                        str(k): (str(lv), float(p))
                        for k, lv, p in zip(frame["key"], frame["level"], frame["pdi"], strict=True)
                    }
                    self._difficulty = (model, rows, levels)
                except (OSError, ValueError, KeyError) as exc:  # not built, or built by another version
                    self._difficulty_error = (
                        f"no PDI for this library yet ({exc}); build it with `music-pipeline build`"
                    )
        return self._difficulty

    def levels(self) -> dict[str, tuple[str, float]]:
        """key → (PDI level, PDI) for every scored track (empty when nothing is scored)."""
        loaded = self._load_difficulty()
        return loaded[2] if loaded is not None else {}

    def difficulty(self, key: str) -> dict:
        loaded = self._load_difficulty()
        if loaded is None:
            return _unavailable(self._difficulty_error or "no PDI model")
        model, rows, _ = loaded
        if key not in rows:
            return _unavailable("this track has no difficulty descriptors (added after the last build?)")
        score = model.score(rows[key], top=PUSHING_TOP)
        heard = heard_of(rows[key]) if HEARD_COLUMNS["family"] in rows[key] else None  # a table of an older build
        out = score.to_dict()
        out.update(
            available=True,
            thresholds=list(model.thresholds),
            levels=list(model.levels),
            explanation=explain(rows[key], score.level, score.normalised, heard),  # as `difficulty FILE`
            heard=heard.to_dict() if heard else None,
            reasons=difficulty_reasons(score.level, score.pushing),
        )
        out.pop("normalised", None)
        return out

    # -- genre ----------------------------------------------------------------------------------
    def _load_genre(self):
        with self._lock:
            if self._genre is None and self._genre_error is None:
                try:
                    service = GenreService.open(self.layout.root)
                    note = None
                    status_path = self.layout.genre_status_path
                    if status_path.is_file():
                        st = read_json(status_path)
                        if not st.get("trained"):
                            note = f"the last genre_classifier run trained nothing ({st.get('reason')}); this is the previous model"
                    # the library's learned embedding and tag scores, by key: what the model reads besides the 641 values
                    learned = read_learned_table(self.layout.root)
                    rows = {}
                    if learned is not None and len(learned):
                        L, T = learned[LEARNED_NAMES].to_numpy(np.float64), learned[TAG_NAMES].to_numpy(np.float64)
                        rows = {str(k): (L[i : i + 1], T[i : i + 1]) for i, k in enumerate(learned["key"])}
                    self._genre = (service, service.version_dir.name, note, rows)
                except Exception as exc:  # noqa: BLE001 - missing or unreadable model files: the page says so
                    self._genre_error = f"no genre model ({exc}); it is trained by `music-pipeline build` when the library has at least 2 labels"
        return self._genre

    def _cross_validated(self) -> dict:
        if self._cv is None:
            p = self.layout.genre_predictions_path
            cols = ["key", "first", "p_first", "second", "p_second", "probability_source"]
            try:
                t = read_parquet(p, columns=cols)
                self._cv = {str(r["key"]): {c: r[c] for c in cols[1:]} for r in t.to_dict("records")}
            except Exception:  # noqa: BLE001 - no or older predictions table: the page shows no cross-validated column
                self._cv = {}
        return self._cv

    def genre(self, key: str, raw: np.ndarray, labelled: bool) -> dict:
        loaded = self._load_genre()
        if loaded is None:
            return _unavailable(self._genre_error or "no genre model")
        return self._genre_cached(key, raw.tobytes(), labelled)

    def _genre_answer(self, key: str, raw_bytes: bytes, labelled: bool) -> dict:
        service, version, note, learned_rows = self._genre
        blocks = {HANDCRAFTED: np.frombuffer(raw_bytes, dtype=np.float64)[None, :]}
        if key in learned_rows:
            blocks[LEARNED], blocks[TAGS] = learned_rows[key]
        elif service.needs_learned:
            return _unavailable(
                f"the genre model ({service.model.candidate.name}) reads the learned embedding, which this track does not have yet"
            )
        try:
            # the deployed model's probabilities and its own explanation, as `classify --explain` prints them
            answer = service.classify_inputs(blocks, explain=True, name=key)
        except Exception as exc:  # noqa: BLE001 - an unreadable model or input: the rest of the page stands without it
            log.warning("genre of %s failed: %s", key, exc)
            return _unavailable(f"genre unavailable: {exc}")
        out = {"available": True, "version": version, **{k: v for k, v in answer.items() if k != "file"}}
        notes = [note] if note else []
        if labelled:
            notes.append(
                "this track's label was in the training data, so these probabilities are in-sample; the cross-validated ones are below"
            )
            cv = self._cross_validated().get(key)
            if cv:
                out["cross_validated"] = {k: (float(v) if k.startswith("p_") else v) for k, v in cv.items()}
        out["notes"] = notes
        return out


def difficulty_reasons(level: str, pushing: list[dict]) -> list[str]:
    """One plain sentence per descriptor that moves the track most from the library median."""
    out = []
    for p in pushing:
        name = p["descriptor"].replace("_", " ")
        direction = "harder" if p["vs_median"] > 0 else "easier"
        where = "higher" if p["vs_median"] > 0 else "lower"
        out.append(
            f"{name} is {where} than in most of the library ({p['normalised']:.2f} on the library's 0–1 scale, {p['vs_median']:+.2f} vs the median): reads as {direction}"
        )
    return out
