"""Genre classification on the 641-D embedding, measured the honest way.

* **Feature views.** ``full`` is the embedding as stored. ``level_invariant`` removes what a
  mastering engineer (or a quieter source) changes without changing the music: the absolute mel
  levels become levels relative to the track's mean mel level, and the level-only dimensions
  (MFCC 1, RMS mean/std) are replaced by the RMS coefficient of variation. A gain change leaves
  this view unchanged (tested).
* **Folds.** ``make_folds`` uses ``StratifiedGroupKFold`` with the library's ``group`` column
  (artist/album/source; a track without one is its own group), so no group is on both sides of a
  split, and ``StratifiedKFold`` over tracks beside it (the "shuffled" score, which lets a source
  leak into both sides). k = min(5, the smallest number of groups any class has); below 2 there
  is no honest estimate and ``FoldPlan.reason`` says why.
* **Candidates.** scaler → PCA → XGBoost (strongly regularised), logistic regression and KNN on
  the scaled view. ``evaluate`` scores every candidate on the same grouped and shuffled folds and
  also runs a *nested* grouped CV of the whole selection procedure (choose the candidate on inner
  grouped folds of the outer training part, score it on the outer test part), which is the
  estimate reported for the deployed model: picking the best of several flat CV scores is
  optimistic by construction.
* **Saved model** (``GenreModel.save``/``load``): ``model.json`` (manifest with file hashes),
  ``classes.json``, ``preprocess.npz`` (scaler and PCA parameters) and the estimator in a format
  that does not run code on load (XGBoost UBJ, or ``.npz`` arrays for logistic regression/KNN).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from music_pipeline.features.embedding import FEATURE_NAMES
from music_pipeline.storage import (
    ArtifactPath,
    artifact_path,
    atomic_path,
    ensure_dir,
    list_dir,
    read_bytes,
    read_json,
    read_npz,
    remove_tree,
    write_json,
    write_npz,
)

FORMAT = "music_pipeline.genre_model/1"
FEATURE_SETS = ("full", "level_invariant")
FAMILIES = ("xgb", "logreg", "knn")
DEPLOYABLE_FAMILIES = FAMILIES  # every family here saves without pickle
MAX_SPLITS = 5
MAX_INNER_SPLITS = 3

_NAME_INDEX = {n: i for i, n in enumerate(FEATURE_NAMES)}
_MEL_COLS = np.array([i for i, n in enumerate(FEATURE_NAMES) if n.startswith("mel_")])
_MEL_MEAN_COLS = np.array([i for i, n in enumerate(FEATURE_NAMES) if n.startswith("mel_mean_")])
_LEVEL_ONLY = ["mfcc_mean_01", "rms_mean", "rms_std"]
_KEEP_COLS = np.array([i for i, n in enumerate(FEATURE_NAMES) if n not in _LEVEL_ONLY])


class ModelFileError(RuntimeError):
    """A saved model directory is missing, incomplete or does not match its manifest."""


# ---------------------------------------------------------------- feature views


def feature_view(X: np.ndarray, name: str) -> tuple[np.ndarray, list[str]]:
    """(n, 641) embedding rows → the named view and its column names."""
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] != len(FEATURE_NAMES):
        raise ValueError(f"expected (n, {len(FEATURE_NAMES)}) embedding rows, got {X.shape}")
    if name == "full":
        return X, list(FEATURE_NAMES)
    if name == "level_invariant":
        out = X.copy()
        # a gain of g dB shifts every mel statistic of every band by g: subtract the track's mean level
        level = X[:, _MEL_MEAN_COLS].mean(axis=1, keepdims=True)
        out[:, _MEL_COLS] -= level
        rms_mean, rms_std = X[:, _NAME_INDEX["rms_mean"]], X[:, _NAME_INDEX["rms_std"]]
        rms_cv = np.divide(rms_std, rms_mean, out=np.zeros_like(rms_std), where=rms_mean > 0)
        names = [FEATURE_NAMES[i] for i in _KEEP_COLS] + ["rms_cv"]
        return np.column_stack([out[:, _KEEP_COLS], rms_cv]), names
    raise ValueError(f"unknown feature set {name!r} (choose from {FEATURE_SETS})")


# ---------------------------------------------------------------- labelled data and folds


@dataclass
class LabelledData:
    X: np.ndarray  # (n, 641) embedding rows of the labelled tracks
    labels: np.ndarray  # (n,) str
    classes: list[str]  # sorted
    y: np.ndarray  # (n,) int codes into classes
    groups: np.ndarray  # (n,) str: the group column, or the track key when it has none
    keys: np.ndarray
    relpaths: np.ndarray
    n_unlabelled: int
    n_with_group: int

    @property
    def n(self) -> int:
        return len(self.y)


def labelled_data(df: pd.DataFrame) -> LabelledData:
    """The labelled rows of an embeddings table (unlabelled tracks are left out of training)."""
    label = df["label"].astype("object")
    has_label = label.notna() & (label.astype(str).str.strip() != "")
    sub = df[has_label.to_numpy()]
    labels = sub["label"].astype(str).to_numpy()
    classes = sorted(set(labels))
    raw_groups = sub["group"].tolist() if "group" in sub else [None] * len(sub)
    has_group = np.array([g is not None and not (isinstance(g, float) and np.isnan(g)) and str(g).strip() != "" for g in raw_groups], dtype=bool)
    groups = np.array([f"group:{g}" if ok else f"track:{k}" for g, ok, k in zip(raw_groups, has_group, sub["key"].astype(str))], dtype=object)
    return LabelledData(
        X=sub[FEATURE_NAMES].to_numpy(dtype=np.float64),
        labels=labels,
        classes=classes,
        y=np.searchsorted(classes, labels),
        groups=groups,
        keys=sub["key"].astype(str).to_numpy(),
        relpaths=sub["relpath"].astype(str).to_numpy(),
        n_unlabelled=int((~has_label).sum()),
        n_with_group=int(has_group.sum()),
    )


Folds = list[tuple[np.ndarray, np.ndarray]]


@dataclass
class FoldPlan:
    grouped: Folds
    shuffled: Folds
    n_splits: int
    note: str  # how the groups were formed, or why there is no CV
    groups_per_class: dict[str, int] = field(default_factory=dict)

    @property
    def possible(self) -> bool:
        return self.n_splits >= 2

    def fold_ids(self, n: int, scheme: str = "grouped") -> np.ndarray:
        ids = np.full(n, -1)
        for k, (_, test) in enumerate(getattr(self, scheme)):
            ids[test] = k
        return ids


def make_folds(y: np.ndarray, groups: np.ndarray, max_splits: int = MAX_SPLITS, seed: int = 0, classes: Sequence[str] | None = None) -> FoldPlan:
    """Grouped and shuffled stratified folds with the same k = min(max_splits, fewest groups in a class)."""
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    y, groups = np.asarray(y), np.asarray(groups)
    codes = np.unique(y)
    per_class = {(str(classes[int(c)]) if classes is not None else str(c)): int(len(np.unique(groups[y == c]))) for c in codes}
    if len(codes) < 2:
        return FoldPlan([], [], 0, "cross-validation needs at least 2 labels", per_class)
    fewest = min(per_class.values())
    k = min(max_splits, fewest)
    if k < 2:
        small = [c for c, g in per_class.items() if g < 2]
        return FoldPlan([], [], k, f"no grouped cross-validation possible: {', '.join(small)} {'has' if len(small) == 1 else 'have'} fewer than 2 groups (sources); "
                        "add tracks from another artist/album/source for every label", per_class)
    grouped = [(tr, te) for tr, te in StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed).split(np.zeros(len(y)), y, groups)]
    shuffled = [(tr, te) for tr, te in StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(np.zeros(len(y)), y)]
    singletons = len(np.unique(groups)) == len(groups)
    note = f"{k}-fold StratifiedGroupKFold over {len(np.unique(groups))} groups (fewest groups in a class: {fewest})"
    if singletons:
        note += "; no track shares a group, so grouped and shuffled folds are the same kind of split (tracks of one source may still sit on both sides)"
    return FoldPlan(grouped, shuffled, k, note, per_class)


# ---------------------------------------------------------------- candidates and the fitted model


@dataclass(frozen=True)
class XgbSettings:
    """Fixed, deliberately conservative settings; max_depth and the PCA size are searched."""

    n_estimators: int = 200
    learning_rate: float = 0.05
    min_child_weight: float = 2.0
    subsample: float = 0.8
    colsample_bytree: float = 0.8
    reg_lambda: float = 5.0
    max_bin: int = 64
    # 1, not 2: CV fits are small, and on a shared 2-core machine two threads measured 3-10x slower
    n_jobs: int = 1


@dataclass(frozen=True)
class Candidate:
    family: str  # xgb | logreg | knn
    features: str = "full"
    pca: int | None = None  # xgb: number of PCA components
    max_depth: int = 2  # xgb
    C: float = 0.1  # logreg: inverse regularisation strength
    k: int = 7  # knn neighbours

    @property
    def name(self) -> str:
        if self.family == "xgb":
            return f"xgb[{self.features}, pca={self.pca}, depth={self.max_depth}]"
        if self.family == "logreg":
            return f"logreg[{self.features}, C={self.C:g}]"
        return f"knn[{self.features}, k={self.k}]"

    @property
    def kind(self) -> str:
        """family + feature view: one row per kind in the comparison table."""
        return f"{self.family}[{self.features}]"


def _build_pipeline(c: Candidate, n_train: int, n_features: int, n_classes: int, xgb_settings: XgbSettings, seed: int):
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    steps = [("scale", StandardScaler())]
    if c.family == "xgb":
        from xgboost import XGBClassifier

        n_comp = max(1, min(c.pca or 15, n_train - 1, n_features))
        steps.append(("pca", PCA(n_components=n_comp, svd_solver="full")))
        est = XGBClassifier(
            **asdict(xgb_settings),
            max_depth=c.max_depth,
            tree_method="hist",
            random_state=seed,
            objective="multi:softprob" if n_classes > 2 else "binary:logistic",
            eval_metric="mlogloss" if n_classes > 2 else "logloss",
        )
    elif c.family == "logreg":
        est = LogisticRegression(C=c.C, class_weight="balanced", max_iter=3000)
    elif c.family == "knn":
        est = KNeighborsClassifier(n_neighbors=max(1, min(c.k, n_train)), weights="distance")
    else:
        raise ValueError(f"unknown model family {c.family!r}")
    steps.append(("model", est))
    return Pipeline(steps)


class GenreModel:
    """A fitted feature view → scaler → [PCA] → estimator, with its class names."""

    def __init__(self, candidate: Candidate, classes: list[str], pipeline, view_names: list[str], info: dict | None = None):
        self.candidate = candidate
        self.classes = list(classes)
        self.pipeline = pipeline
        self.view_names = view_names
        self.info = dict(info or {})

    # ---- fit / predict
    @classmethod
    def fit(cls, candidate: Candidate, X: np.ndarray, labels: Sequence[str], seed: int = 0, xgb_settings: XgbSettings | None = None) -> "GenreModel":
        from sklearn.utils.class_weight import compute_sample_weight

        labels = np.asarray(labels).astype(str)
        classes = sorted(set(labels))
        if len(classes) < 2:
            raise ValueError("a classifier needs at least 2 labels")
        y = np.searchsorted(classes, labels)
        Xv, names = feature_view(X, candidate.features)
        pipe = _build_pipeline(candidate, len(y), Xv.shape[1], len(classes), xgb_settings or XgbSettings(), seed)
        fit_params = {}
        if candidate.family == "xgb":  # balanced accuracy is the target: weight classes equally
            fit_params["model__sample_weight"] = compute_sample_weight("balanced", y)
        pipe.fit(Xv, y, **fit_params)
        info = {"n_train": int(len(y)), "seed": seed, "xgb_settings": asdict(xgb_settings or XgbSettings())}
        return cls(candidate, classes, pipe, names, info)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        Xv, _ = feature_view(np.atleast_2d(X), self.candidate.features)
        return self.pipeline.predict_proba(Xv)

    def predict(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(self.classes, dtype=object)[self.predict_proba(X).argmax(axis=1)]

    @property
    def is_xgb(self) -> bool:
        return self.candidate.family == "xgb"

    def scaled_view(self, X: np.ndarray) -> np.ndarray:
        Xv, _ = feature_view(np.atleast_2d(X), self.candidate.features)
        return self.pipeline.named_steps["scale"].transform(Xv)

    def model_space(self, X: np.ndarray) -> np.ndarray:
        """What the final estimator sees (PCA components for XGBoost)."""
        Xv, _ = feature_view(np.atleast_2d(X), self.candidate.features)
        return self.pipeline[:-1].transform(Xv)

    # ---- pickle-free persistence
    def _estimator_arrays(self) -> dict[str, np.ndarray]:
        est = self.pipeline.named_steps["model"]
        if self.candidate.family == "logreg":
            return {"coef": est.coef_, "intercept": est.intercept_}
        return {"fit_X": est._fit_X, "fit_y": est._y, "n_neighbors": np.int64(est.n_neighbors)}

    def save(self, directory: ArtifactPath) -> ArtifactPath:
        """Write the model files into ``directory`` (a fresh directory: see ``publish_version``)."""
        directory = ensure_dir(directory)
        scale = self.pipeline.named_steps["scale"]
        pre = {"scale_mean": scale.mean_, "scale_scale": scale.scale_, "scale_var": scale.var_, "n_samples_seen": np.int64(scale.n_samples_seen_)}
        if "pca" in self.pipeline.named_steps:
            pca = self.pipeline.named_steps["pca"]
            pre.update(pca_components=pca.components_, pca_mean=pca.mean_, pca_explained_variance=pca.explained_variance_,
                       pca_explained_variance_ratio=pca.explained_variance_ratio_, pca_singular_values=pca.singular_values_,
                       pca_noise_variance=np.float64(pca.noise_variance_), pca_n_samples=np.int64(pca.n_samples_))
        files = {"preprocess.npz": write_npz(directory / "preprocess.npz", pre), "classes.json": write_json(directory / "classes.json", self.classes)}
        if self.is_xgb:
            est_file = directory / "xgb_model.ubj"
            with atomic_path(est_file, suffix=".ubj") as tmp:  # xgboost picks the format from the suffix
                self.pipeline.named_steps["model"].save_model(str(tmp))
            files["xgb_model.ubj"] = est_file
        else:
            name = f"{self.candidate.family}.npz"
            files[name] = write_npz(directory / name, self._estimator_arrays())
        manifest = {
            "format": FORMAT,
            "candidate": asdict(self.candidate),
            "name": self.candidate.name,
            "input": {"n_features": len(FEATURE_NAMES), "names_sha256": _sha256_text("\n".join(FEATURE_NAMES))},
            "view_names": self.view_names,
            "files": {n: _sha256_file(p) for n, p in files.items()},
            "info": self.info,
        }
        write_json(directory / "model.json", manifest)
        return directory

    @classmethod
    def load(cls, directory: ArtifactPath) -> "GenreModel":
        """Rebuild the fitted pipeline from the files (no pickle; hashes checked against model.json)."""
        from sklearn.decomposition import PCA
        from sklearn.linear_model import LogisticRegression
        from sklearn.neighbors import KNeighborsClassifier
        from sklearn.pipeline import Pipeline
        from sklearn.preprocessing import StandardScaler

        directory = artifact_path(directory)
        manifest_path = directory / "model.json"
        if not manifest_path.is_file():
            raise ModelFileError(f"no genre model in {directory} (model.json missing)")
        manifest = read_json(manifest_path)
        if manifest.get("format") != FORMAT:
            raise ModelFileError(f"{manifest_path}: unsupported format {manifest.get('format')!r} (expected {FORMAT})")
        if manifest["input"]["names_sha256"] != _sha256_text("\n".join(FEATURE_NAMES)):
            raise ModelFileError(f"{directory}: model was trained on a different embedding layout; retrain it")
        for name, digest in manifest["files"].items():
            p = directory / name
            if not p.is_file() or _sha256_file(p) != digest:
                raise ModelFileError(f"{p}: missing or does not match model.json (interrupted write or edited file)")
        candidate = Candidate(**manifest["candidate"])
        classes = [str(c) for c in read_json(directory / "classes.json")]
        pre = read_npz(directory / "preprocess.npz")
        scale = StandardScaler()
        scale.mean_, scale.scale_, scale.var_ = pre["scale_mean"], pre["scale_scale"], pre["scale_var"]
        scale.n_features_in_, scale.n_samples_seen_ = len(scale.mean_), int(pre["n_samples_seen"])
        steps = [("scale", scale)]
        if "pca_components" in pre:
            comps = pre["pca_components"]
            pca = PCA(n_components=comps.shape[0], svd_solver="full")
            pca.components_, pca.mean_ = comps, pre["pca_mean"]
            pca.explained_variance_, pca.explained_variance_ratio_ = pre["pca_explained_variance"], pre["pca_explained_variance_ratio"]
            pca.singular_values_, pca.noise_variance_ = pre["pca_singular_values"], float(pre["pca_noise_variance"])
            pca.n_components_, pca.n_features_in_, pca.n_samples_ = comps.shape[0], comps.shape[1], int(pre["pca_n_samples"])
            steps.append(("pca", pca))
        if candidate.family == "xgb":
            from xgboost import XGBClassifier

            est = XGBClassifier()
            est.load_model(bytearray(read_bytes(directory / "xgb_model.ubj")))
        elif candidate.family == "logreg":
            arrs = read_npz(directory / "logreg.npz")
            est = LogisticRegression(C=candidate.C)
            est.coef_, est.intercept_ = arrs["coef"], arrs["intercept"]
            est.classes_, est.n_features_in_, est.n_iter_ = np.arange(len(classes)), arrs["coef"].shape[1], np.array([0])
        elif candidate.family == "knn":
            arrs = read_npz(directory / "knn.npz")
            est = KNeighborsClassifier(n_neighbors=int(arrs["n_neighbors"]), weights="distance").fit(arrs["fit_X"], arrs["fit_y"])
        else:
            raise ModelFileError(f"{directory}: unknown model family {candidate.family!r}")
        steps.append(("model", est))
        return cls(candidate, classes, Pipeline(steps), manifest["view_names"], manifest.get("info", {}))


def _sha256_file(p: ArtifactPath) -> str:
    return hashlib.sha256(read_bytes(p)).hexdigest()


def _sha256_text(s: str) -> str:
    return hashlib.sha256(s.encode()).hexdigest()


# ---------------------------------------------------------------- versions on disk


CURRENT = "CURRENT.json"


def publish_version(root: ArtifactPath, write: Callable[[ArtifactPath], None], keep: int = 3) -> ArtifactPath:
    """Write a new model version with ``write(version_dir)``, then switch ``CURRENT.json`` to it.

    Readers follow CURRENT.json, which is replaced atomically, so they see the old complete
    version or the new complete one, never a mixture. Old versions beyond ``keep`` are removed.
    """
    import time

    root = ensure_dir(root)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    # names sort in publication order even after pruning: a stamp already used gets the next -N
    taken = [_version_order(p)[1] for p in list_dir(root) if p.name.split("-")[0] == f"v{stamp}"]
    vdir = root / (f"v{stamp}-{max(taken) + 1}" if taken else f"v{stamp}")
    try:
        write(vdir)
    except BaseException:
        remove_tree(vdir)
        raise
    write_json(root / CURRENT, {"version": vdir.name})
    # by the time stamp in the name: object stores keep no directory times
    versions = sorted((p for p in list_dir(root) if p.is_dir() and p.name.startswith("v")), key=_version_order)
    for old in versions[:-keep]:
        if old.name != vdir.name:
            remove_tree(old)
    return vdir


def _version_order(p: ArtifactPath) -> tuple[str, int]:
    stamp, _, n = p.name.partition("-")
    return stamp, int(n) if n.isdigit() else 0


def current_version(root: ArtifactPath) -> ArtifactPath | None:
    root = artifact_path(root)
    p = root / CURRENT
    if not p.is_file():
        return None
    name = str(read_json(p)["version"])
    if "/" in name or name.startswith("."):
        raise ModelFileError(f"{p}: invalid version name {name!r}")
    return root / name


# ---------------------------------------------------------------- metrics


def metrics(y: np.ndarray, pred: np.ndarray, classes: Sequence[str]) -> dict:
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, classification_report, confusion_matrix, f1_score

    labels = np.arange(len(classes))
    return {
        "accuracy": float(accuracy_score(y, pred)),
        "balanced_accuracy": float(balanced_accuracy_score(y, pred)),
        "macro_f1": float(f1_score(y, pred, labels=labels, average="macro", zero_division=0)),
        "per_class": classification_report(y, pred, labels=labels, target_names=list(classes), output_dict=True, zero_division=0),
        "confusion": confusion_matrix(y, pred, labels=labels).tolist(),
    }


def majority_baseline(y: np.ndarray, folds: Folds) -> np.ndarray:
    """Out-of-fold predictions of 'always the training fold's most common label'."""
    pred = np.full(len(y), -1)
    for tr, te in folds:
        pred[te] = np.bincount(y[tr]).argmax()
    return pred


def headline(m: dict | None) -> dict:
    return {k: m[k] for k in ("accuracy", "balanced_accuracy", "macro_f1")} if m else {}


# ---------------------------------------------------------------- cross-validation and selection


@dataclass
class SearchConfig:
    families: tuple[str, ...] = FAMILIES
    feature_sets: tuple[str, ...] = FEATURE_SETS
    pca_grid: tuple[int, ...] = (15, 40)
    depth_grid: tuple[int, ...] = (2, 3)
    logreg_C: tuple[float, ...] = (0.02, 0.2)
    knn_k: tuple[int, ...] = (7,)
    knn_feature_sets: tuple[str, ...] = ("full",)
    xgb: XgbSettings = field(default_factory=XgbSettings)
    nested: bool = True
    max_splits: int = MAX_SPLITS
    seed: int = 0

    def candidates(self) -> list[Candidate]:
        out: list[Candidate] = []
        for fam in self.families:
            if fam == "xgb":
                out += [Candidate("xgb", fs, pca=p, max_depth=d) for fs in self.feature_sets for p in self.pca_grid for d in self.depth_grid]
            elif fam == "logreg":
                out += [Candidate("logreg", fs, C=c) for fs in self.feature_sets for c in self.logreg_C]
            elif fam == "knn":
                out += [Candidate("knn", fs, k=k) for fs in self.knn_feature_sets for k in self.knn_k]
            else:
                raise ValueError(f"unknown family {fam!r}")
        if not out:
            raise ValueError("the search has no candidates")
        return out


def oof_proba(c: Candidate, X: np.ndarray, y: np.ndarray, folds: Folds, n_classes: int, config: SearchConfig) -> np.ndarray:
    """Out-of-fold probabilities (n, n_classes); a class absent from a training fold gets 0."""
    proba = np.zeros((len(y), n_classes))
    for tr, te in folds:
        present = np.unique(y[tr])
        if len(present) < 2:  # degenerate fold: predict its only label
            proba[np.ix_(te, present)] = 1.0
            continue
        m = GenreModel.fit(c, X[tr], y[tr].astype(str), seed=config.seed, xgb_settings=config.xgb)
        local = np.array([int(s) for s in m.classes])
        proba[np.ix_(te, local)] = m.predict_proba(X[te])
    return proba


def _score(m: dict) -> tuple[float, float]:
    return (round(m["balanced_accuracy"], 10), round(m["macro_f1"], 10))


def select(results: dict[Candidate, dict], order: Sequence[Candidate]) -> Candidate:
    """Best grouped balanced accuracy (macro-F1 breaks ties; then the earlier candidate, XGBoost first)."""
    return max(order, key=lambda c: (_score(results[c]), -order.index(c)))


@dataclass
class CandidateResult:
    candidate: Candidate
    grouped: dict
    shuffled: dict
    grouped_proba: np.ndarray


@dataclass
class Evaluation:
    plan: FoldPlan
    classes: list[str]
    results: list[CandidateResult]
    selected: Candidate | None
    nested: dict | None  # metrics of the nested grouped CV of the selection procedure
    nested_pred: np.ndarray | None
    nested_choices: list[str]
    baseline_grouped: dict | None
    baseline_shuffled: dict | None
    note: str

    def result(self, c: Candidate) -> CandidateResult:
        return next(r for r in self.results if r.candidate == c)

    def estimate(self) -> tuple[str, dict | None]:
        """The honest grouped estimate of the deployed procedure: nested when it ran."""
        if self.nested:
            return "nested grouped CV", self.nested
        if self.selected is not None and self.plan.possible:
            return "grouped CV (flat: selection not nested, optimistic)", self.result(self.selected).grouped
        return "none", None

    def table(self) -> pd.DataFrame:
        rows = []
        for r in self.results:
            rows.append({"model": r.candidate.name, "kind": r.candidate.kind, "family": r.candidate.family,
                         **{f"grouped_{k}": v for k, v in headline(r.grouped).items()},
                         **{f"shuffled_{k}": v for k, v in headline(r.shuffled).items()}})
        df = pd.DataFrame(rows)
        return df.sort_values("grouped_balanced_accuracy", ascending=False, kind="stable") if len(df) else df


def evaluate(data: LabelledData, config: SearchConfig, on_progress: Callable[[str], None] | None = None) -> Evaluation:
    """Every candidate on the same grouped and shuffled folds, plus the nested estimate."""
    say = on_progress or (lambda _m: None)
    K = len(data.classes)
    plan = make_folds(data.y, data.groups, config.max_splits, config.seed, data.classes)
    cands = config.candidates()
    if not plan.possible:
        return Evaluation(plan, data.classes, [], cands[0] if K >= 2 else None, None, None, [], None, None,
                          plan.note + "; deployed with the first candidate's settings, unvalidated")
    results = []
    for i, c in enumerate(cands):
        say(f"candidate {i + 1}/{len(cands)}: {c.name}")
        pg = oof_proba(c, data.X, data.y, plan.grouped, K, config)
        ps = oof_proba(c, data.X, data.y, plan.shuffled, K, config)
        results.append(CandidateResult(c, metrics(data.y, pg.argmax(1), data.classes), metrics(data.y, ps.argmax(1), data.classes), pg))
    by_c = {r.candidate: r.grouped for r in results}
    selected = select(by_c, cands)
    nested = nested_pred = None
    choices: list[str] = []
    if config.nested and len(cands) > 1:
        nested_pred = np.full(data.n, -1)
        for k, (tr, te) in enumerate(plan.grouped):
            say(f"nested selection, outer fold {k + 1}/{plan.n_splits}")
            choice = _inner_select(data, tr, cands, config)
            choices.append(choice.name)
            p = oof_proba(choice, data.X, data.y, [(tr, te)], K, config)
            nested_pred[te] = p[te].argmax(1)
        nested = metrics(data.y, nested_pred, data.classes)
    elif len(cands) == 1:  # nothing is selected, so the flat grouped score is already honest
        nested, nested_pred = results[0].grouped, results[0].grouped_proba.argmax(1)
        choices = [cands[0].name] * plan.n_splits
    base_g = metrics(data.y, majority_baseline(data.y, plan.grouped), data.classes)
    base_s = metrics(data.y, majority_baseline(data.y, plan.shuffled), data.classes)
    return Evaluation(plan, data.classes, results, selected, nested, nested_pred, choices, base_g, base_s, plan.note)


def _inner_select(data: LabelledData, outer_train: np.ndarray, cands: list[Candidate], config: SearchConfig) -> Candidate:
    """Choose a candidate using only the outer training part (grouped inner folds)."""
    y, g = data.y[outer_train], data.groups[outer_train]
    inner = make_folds(y, g, min(MAX_INNER_SPLITS, config.max_splits), config.seed + 1)
    if not inner.possible:
        return cands[0]
    K = len(data.classes)
    scores = {}
    for c in cands:
        p = oof_proba(c, data.X[outer_train], y, inner.grouped, K, config)
        scores[c] = metrics(y, p.argmax(1), data.classes)
    return select(scores, cands)


def fit_deployed(data: LabelledData, candidate: Candidate, config: SearchConfig) -> GenreModel:
    return GenreModel.fit(candidate, data.X, data.labels, seed=config.seed, xgb_settings=config.xgb)


def best_xgb(ev: Evaluation) -> Candidate | None:
    """The best XGBoost candidate (the SHAP explainer when another family is deployed)."""
    xs = [r for r in ev.results if r.candidate.family == "xgb"]
    if not xs:
        return None
    order = [r.candidate for r in xs]
    return select({r.candidate: r.grouped for r in xs}, order)


def fold_assignment(data: LabelledData, plan: FoldPlan) -> dict:
    """The folds as JSON (by track key), so other models can be scored on exactly the same splits."""
    return {
        "keys": data.keys.tolist(),
        "groups": data.groups.tolist(),
        "labels": data.labels.tolist(),
        "n_splits": plan.n_splits,
        "grouped": plan.fold_ids(data.n, "grouped").tolist() if plan.possible else [],
        "shuffled": plan.fold_ids(data.n, "shuffled").tolist() if plan.possible else [],
        "note": plan.note,
    }


def plan_from_assignment(assign: dict, keys: Sequence[str]) -> FoldPlan | None:
    """Rebuild a FoldPlan for ``keys`` from ``fold_assignment`` output; None when the tracks differ."""
    if list(assign.get("keys", [])) != list(keys) or not assign.get("grouped"):
        return None
    def folds(ids):
        ids = np.asarray(ids)
        return [(np.flatnonzero(ids != k), np.flatnonzero(ids == k)) for k in range(int(assign["n_splits"]))]
    return FoldPlan(folds(assign["grouped"]), folds(assign["shuffled"]), int(assign["n_splits"]), str(assign["note"]))


def to_jsonable(obj):
    return json.loads(json.dumps(obj, default=lambda o: o.tolist() if isinstance(o, np.ndarray) else (o.item() if isinstance(o, np.generic) else str(o))))


__all__ = [
    "Candidate", "Evaluation", "FoldPlan", "GenreModel", "LabelledData", "ModelFileError", "SearchConfig", "XgbSettings",
    "best_xgb", "current_version", "headline", "evaluate", "feature_view", "fit_deployed", "fold_assignment", "labelled_data",
    "majority_baseline", "make_folds", "metrics", "plan_from_assignment", "publish_version",
]
