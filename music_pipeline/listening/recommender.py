"""A hybrid recommender: implicit-feedback matrix factorisation blended with a content model.

Evidence per (listener, track), from the event log (``history.py``):

- a play adds its **playing coefficient** ``seconds_played / duration`` clipped to [0, 1] (a
  finished play 1; a play of unknown length 1 if finished, else ½);
- a like adds ``like_weight``; a skip subtracts ``skip_weight``.

``value > 0`` is a positive with confidence ``alpha·value``; ``value < 0`` a negative with
confidence ``alpha·|value|`` (implicit's convention for negative entries). Every track with any
event counts as **played**: it is never recommended to that listener.

Three scores for each track the listener has not played, each standardised over those tracks:

- **CF**: implicit ALS (``implicit`` package, trained by ``fit``) item factors; the listener's
  factors are solved at query time from their *current* events (the closed form of Hu, Koren &
  Volinsky), so an import is reflected without retraining. A track nobody played (added by a
  build, or unplayed) gets factors **predicted from its content vector** by a ridge regression
  fitted on the played tracks.
- **content**: a per-listener logistic regression on the content vectors (the similarity index's
  space: the learned / fused embedding when the library has it) — positives the tracks they
  played or liked, negatives the tracks they skipped, unplayed tracks as weak negatives.
- **popularity**: how many listeners played it (only for a listener with no positive evidence).

The blend moves with the evidence: the CF weight is ``e_user · e_track`` with
``e_user = n/(n + user_half)`` (n = the listener's positive tracks) and ``e_track = m/(m +
track_half)`` (m = other listeners who played the track positively; 0 for a track nobody played,
whose predicted factors are then blended in at ``cold_cf_weight``). The content model takes the
rest. The defaults were chosen on the simulation of ``benchmarks/bench_listening.py``
(docs/listening.md), not on any outside check.

Files and paths are for display only: the only track features are the audio's content vectors.
Nothing here imports Dagster; ``implicit`` and scikit-learn are imported inside functions.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

MODEL_NAME = "listening_model"
MODEL_VERSION = "1"  # the asset's code version: bump when training changes
MODEL_FORMAT = 1
MODEL_FILES = ("model.npz", "model.json")  # inside layout.listening_model_dir; model.json written last
UNKNOWN_FINISHED_COEF = 1.0
UNKNOWN_PARTIAL_COEF = 0.5


@dataclass
class Params:
    factors: int = 16
    regularization: float = 10.0
    alpha: float = 10.0
    iterations: int = 15
    like_weight: float = 1.0
    skip_weight: float = 1.0
    ridge: float = 1.0  # content vector -> factors regression
    content_c: float = 1.0  # inverse L2 strength of the per-listener logistic regression
    unplayed_weight: float = 0.2  # total weight of the unplayed tracks, relative to the played ones
    max_unplayed: int = 5_000  # unplayed tracks sampled as weak negatives (seeded)
    user_half: float = 2.0  # positive tracks at which a listener's CF evidence is half-trusted
    track_half: float = 1.0  # other listeners at which a track's CF evidence is half-trusted
    cold_cf_weight: float = 1.0  # CF weight of predicted factors (tracks nobody played)
    popularity_weight: float = 0.05  # tie-breaker for listeners with evidence
    seed: int = 0

    @classmethod
    def from_dict(cls, values: dict) -> Params:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in values.items() if k in known})


# -- evidence ------------------------------------------------------------------------------------
def play_coefficients(events: pd.DataFrame, durations: dict[str, float]) -> np.ndarray:
    """Playing coefficient of each play event (0 for other events)."""
    dur = events["track"].map(durations).astype(float).to_numpy()
    secs = pd.to_numeric(events["seconds_played"], errors="coerce").to_numpy(dtype=float)
    finished = events["finished"].fillna(False).astype(bool).to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        coef = np.clip(secs / dur, 0.0, 1.0)
    unknown = ~np.isfinite(coef)
    coef[unknown] = np.where(finished[unknown], UNKNOWN_FINISHED_COEF, UNKNOWN_PARTIAL_COEF)
    coef[finished] = 1.0
    return np.where(events["event"].to_numpy() == "play", coef, 0.0)


def interactions(events: pd.DataFrame, durations: dict[str, float], params: Params | None = None) -> pd.DataFrame:
    """One row per (user, track): ``value`` (the net evidence), plays, skips, likes."""
    params = params or Params()
    if events.empty:
        return pd.DataFrame(columns=["user", "track", "value", "plays", "skips", "likes"])
    kind = events["event"].to_numpy()
    df = pd.DataFrame(
        {
            "user": events["user"].to_numpy(),
            "track": events["track"].to_numpy(),
            "coef": play_coefficients(events, durations),
            "plays": (kind == "play").astype(int),
            "skips": (kind == "skip").astype(int),
            "likes": (kind == "like").astype(int),
        }
    )
    g = df.groupby(["user", "track"], sort=True).sum().reset_index()
    g["value"] = g["coef"] + params.like_weight * g["likes"] - params.skip_weight * g["skips"]
    return g[["user", "track", "value", "plays", "skips", "likes"]]


# -- the trained part ----------------------------------------------------------------------------
@dataclass
class ListeningModel:
    params: Params
    item_keys: np.ndarray  # tracks with trained factors (someone played them positively)
    item_factors: np.ndarray  # (m, f)
    content_to_factors: np.ndarray  # (d + 1, f): ridge from [content vector, 1] to factors
    space: dict  # what the content vectors were (index transform, dim, when it was fitted)
    info: dict = field(default_factory=dict)

    # -- training --------------------------------------------------------------------------------
    @classmethod
    def fit(
        cls,
        inter: pd.DataFrame,
        keys: np.ndarray,
        vectors: np.ndarray,
        params: Params | None = None,
        space: dict | None = None,
    ) -> ListeningModel:
        """Train ALS on the evidence of every listener, and the content→factors regression."""
        from scipy.sparse import csr_matrix

        params = params or Params()
        t0 = time.perf_counter()
        pos = {k: i for i, k in enumerate(keys)}
        inter = inter[inter["track"].isin(pos) & (inter["value"] != 0)]
        positive_tracks = np.array(sorted(set(inter.loc[inter["value"] > 0, "track"])), dtype=object)
        f = params.factors
        if len(positive_tracks) == 0:
            return cls(
                params,
                np.array([], dtype=str),
                np.zeros((0, f), np.float32),
                np.zeros((vectors.shape[1] + 1, f)),
                space or {},
            )
        # every track with evidence takes part in ALS (skips are evidence); only positively played
        # ones keep their factors as "warm"
        tracks = np.array(sorted(set(inter["track"])), dtype=object)
        col = {k: i for i, k in enumerate(tracks)}
        users = np.array(sorted(set(inter["user"])), dtype=object)
        row = {u: i for i, u in enumerate(users)}
        matrix = csr_matrix(
            (
                inter["value"].to_numpy(dtype=np.float32),
                (inter["user"].map(row).to_numpy(), inter["track"].map(col).to_numpy()),
            ),
            shape=(len(users), len(tracks)),
        )
        item_factors = _als(matrix, params)
        warm = np.array([col[k] for k in positive_tracks])
        y = item_factors[warm]
        v = np.asarray(vectors[[pos[k] for k in positive_tracks]], dtype=np.float64)
        w = _ridge(v, y, params.ridge)
        info = {
            "users": len(users),
            "tracks_with_evidence": len(tracks),
            "warm_tracks": len(positive_tracks),
            "interactions": len(inter),
            "train_seconds": round(time.perf_counter() - t0, 3),
        }
        return cls(params, positive_tracks.astype(str), y.astype(np.float32), w, space or {}, info)

    def predicted_factors(self, vectors: np.ndarray) -> np.ndarray:
        v = np.asarray(vectors, dtype=np.float64)
        return np.hstack([v, np.ones((len(v), 1))]) @ self.content_to_factors

    # -- storage ---------------------------------------------------------------------------------
    def save(self, directory) -> None:
        from music_pipeline.artifacts import ensure_dir, write_json, write_npz

        directory = ensure_dir(directory)
        write_npz(
            directory / "model.npz",
            {
                "item_keys": self.item_keys.astype(str),
                "item_factors": self.item_factors,
                "content_to_factors": self.content_to_factors,
            },
        )
        write_json(  # written last: a reader that finds model.json finds the arrays
            directory / "model.json",
            {
                "format": MODEL_FORMAT,
                "version": MODEL_VERSION,
                "params": asdict(self.params),
                "space": self.space,
                "info": self.info,
            },
        )

    @classmethod
    def load(cls, directory) -> ListeningModel | None:
        """The saved model, or None when there is none (or another format/version)."""
        from music_pipeline.artifacts import read_json, read_npz

        try:
            meta = read_json(directory / "model.json")
            if meta.get("format") != MODEL_FORMAT or meta.get("version") != MODEL_VERSION:
                return None
            a = read_npz(directory / "model.npz")
        except (OSError, ValueError, KeyError):
            return None
        return cls(
            Params.from_dict(meta.get("params", {})),
            a["item_keys"],
            a["item_factors"],
            a["content_to_factors"],
            meta.get("space", {}),
            meta.get("info", {}),
        )


def _als(matrix, params: Params) -> np.ndarray:
    """Item factors of implicit's ALS (one thread: same inputs, same factors)."""
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        model = AlternatingLeastSquares(
            factors=params.factors,
            regularization=params.regularization,
            alpha=params.alpha,
            iterations=params.iterations,
            num_threads=1,
            random_state=params.seed,
        )
        model.fit(matrix, show_progress=False)
    return np.asarray(model.item_factors, dtype=np.float64)


def _ridge(x: np.ndarray, y: np.ndarray, lam: float) -> np.ndarray:
    """(d + 1, f) weights of ridge regression with an unpenalised intercept (dual form when n < d)."""
    mx, my = x.mean(axis=0), y.mean(axis=0)
    xc, yc = x - mx, y - my
    if len(x) < x.shape[1]:
        w = xc.T @ np.linalg.solve(xc @ xc.T + lam * np.eye(len(x)), yc)
    else:
        w = np.linalg.solve(xc.T @ xc + lam * np.eye(x.shape[1]), xc.T @ yc)
    return np.vstack([w, my - mx @ w])


def user_factors(model: ListeningModel, track_values: dict[str, float]) -> np.ndarray | None:
    """The listener's factors from their current evidence on the model's warm tracks (exact
    least squares with implicit's confidences), None when none of their tracks is warm."""
    p = model.params
    pos = {k: i for i, k in enumerate(model.item_keys)}
    rows = [(pos[k], v) for k, v in track_values.items() if k in pos and v != 0]
    if not rows:
        return None
    y = np.asarray(model.item_factors, dtype=np.float64)
    idx = np.array([r[0] for r in rows])
    val = np.array([r[1] for r in rows], dtype=np.float64)
    conf = p.alpha * np.abs(val)
    a = y.T @ y + p.regularization * np.eye(y.shape[1])
    a += (y[idx].T * (conf - 1.0)) @ y[idx]
    b = (y[idx] * np.where(val > 0, conf, 0.0)[:, None]).sum(axis=0)
    return np.linalg.solve(a, b)


# -- scoring -------------------------------------------------------------------------------------
def _z(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    sd = x.std()
    return (x - x.mean()) / sd if sd > 1e-12 else np.zeros_like(x)


def content_scores(
    vectors: np.ndarray, positives: np.ndarray, negatives: np.ndarray, unplayed: np.ndarray, params: Params
) -> np.ndarray | None:
    """Decision values of a per-listener logistic regression for every row of ``vectors`` (None
    without a positive). ``positives``/``negatives``/``unplayed`` are row positions."""
    from sklearn.linear_model import LogisticRegression

    if len(positives) == 0:
        return None
    rng = np.random.default_rng(params.seed)
    if len(unplayed) > params.max_unplayed:
        unplayed = np.sort(rng.choice(unplayed, params.max_unplayed, replace=False))
    played = len(positives) + len(negatives)
    rows = np.concatenate([positives, negatives, unplayed]).astype(np.int64)
    y = np.concatenate([np.ones(len(positives)), np.zeros(len(negatives) + len(unplayed))])
    unplayed_w = params.unplayed_weight * played / max(1, len(unplayed))
    w = np.concatenate([np.ones(played), np.full(len(unplayed), unplayed_w)])
    if len(set(y)) < 2:
        return np.asarray(vectors, dtype=np.float64) @ np.asarray(vectors[positives], dtype=np.float64).mean(axis=0)
    clf = LogisticRegression(C=params.content_c, max_iter=1000, class_weight="balanced")
    clf.fit(np.asarray(vectors[rows], dtype=np.float64), y, sample_weight=w)
    return clf.decision_function(np.asarray(vectors, dtype=np.float64))


@dataclass
class Scored:
    """Every track's blended score for one listener (NaN for played tracks) and its parts."""

    score: np.ndarray
    played: np.ndarray  # bool
    cf: np.ndarray | None
    content: np.ndarray | None
    cf_weight: np.ndarray
    listeners: np.ndarray  # other listeners with positive evidence per track
    positives: np.ndarray  # row positions of the listener's positive tracks
    evidence: int


def score_tracks(
    model: ListeningModel | None,
    inter: pd.DataFrame,
    user: str,
    keys: np.ndarray,
    vectors: np.ndarray,
    parts: tuple[str, ...] = ("cf", "content", "popularity"),
) -> Scored:
    """Score every library track for ``user`` from the current evidence ``inter`` (all listeners).
    ``parts`` leaves components out (the benchmark's CF-only and content-only variants)."""
    params = model.params if model is not None else Params()
    n = len(keys)
    pos_of = {k: i for i, k in enumerate(keys)}
    inter = inter[inter["track"].isin(pos_of)]
    mine = inter[inter["user"] == user]
    played = np.zeros(n, dtype=bool)
    played[mine["track"].map(pos_of).to_numpy(dtype=np.int64)] = True
    others = inter[(inter["user"] != user) & (inter["value"] > 0)]
    listeners = np.zeros(n)
    np.add.at(listeners, others["track"].map(pos_of).to_numpy(dtype=np.int64), 1.0)
    positives = np.sort(mine.loc[mine["value"] > 0, "track"].map(pos_of).to_numpy(dtype=np.int64))
    negatives = np.sort(mine.loc[mine["value"] < 0, "track"].map(pos_of).to_numpy(dtype=np.int64))
    cand = ~played
    evidence = len(positives)

    popularity = _z(np.log1p(listeners[cand]))
    cf = content = None
    cf_weight = np.zeros(n)
    if "cf" in parts and model is not None and len(model.item_keys):
        xu = user_factors(model, dict(zip(mine["track"], mine["value"], strict=True)))
        if xu is not None:
            warm_pos = {k: i for i, k in enumerate(model.item_keys)}
            factors = model.predicted_factors(vectors)
            warm_rows = [(pos_of[k], i) for k, i in warm_pos.items() if k in pos_of]
            if warm_rows:
                r, i = np.array(warm_rows).T
                factors[r] = model.item_factors[i]
            cf = factors @ xu
            e_user = evidence / (evidence + params.user_half)
            e_track = listeners / (listeners + params.track_half)
            cf_weight = e_user * np.maximum(e_track, params.cold_cf_weight * (listeners == 0))
    if "content" in parts:
        content = content_scores(vectors, positives, negatives, np.flatnonzero(cand), params)
    if cf is None and content is None:  # no usable evidence of this listener: what others played
        score = popularity
    else:
        if content is None:  # CF only
            w = np.ones(cand.sum())
            blend = _z(cf[cand])
        elif cf is None:
            w = np.zeros(cand.sum())
            blend = _z(content[cand])
        else:
            w = cf_weight[cand]
            blend = w * _z(cf[cand]) + (1.0 - w) * _z(content[cand])
        score = blend + (params.popularity_weight * popularity if "popularity" in parts else 0.0)
    full = np.full(n, np.nan)
    full[cand] = score
    return Scored(full, played, cf, content, cf_weight, listeners, positives, evidence)


def top(scored: Scored, n: int) -> np.ndarray:
    """Row positions of the ``n`` best unplayed tracks, best first (ties by position)."""
    rows = np.flatnonzero(~scored.played)
    order = np.lexsort((rows, -scored.score[rows]))
    return rows[order[:n]]


def why(scored: Scored, row: int, vectors: np.ndarray, title) -> str:
    """One line on why ``row`` is recommended; ``title(row)`` names a track for display."""
    if scored.evidence == 0:
        return (
            f"popular: {int(scored.listeners[row])} listeners played it" if scored.listeners[row] else "no history yet"
        )
    near = ""
    if len(scored.positives):
        sims = np.asarray(vectors[scored.positives], dtype=np.float64) @ np.asarray(vectors[row], dtype=np.float64)
        near = f"sounds like {title(int(scored.positives[int(np.argmax(sims))]))}, which you played"
    w = float(scored.cf_weight[row])
    if scored.listeners[row] == 0:
        return f"nobody has played it yet; {near}" if near else "nobody has played it yet"
    k = int(scored.listeners[row])
    listeners = f"played by {k} other listener{'s' if k != 1 else ''}"
    return f"{listeners}; {near}" if w >= 0.5 or not near else f"{near}; {listeners}"
