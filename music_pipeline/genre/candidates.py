"""The candidate models: a feature view → standardising → [block weights] → [PCA] → estimator.

Families (every one saves without pickle, see ``persistence.py``):

* ``logreg`` — multinomial logistic regression, balanced class weights (coefficients in .npz);
* ``svm`` — RBF support-vector machine, balanced class weights, probabilities by temperature
  scaling of its one-vs-rest decision values (support vectors, dual coefficients, intercepts and
  the temperature in .npz);
* ``knn`` — distance-weighted nearest neighbours (the training rows in .npz);
* ``xgb`` — the reference design: PCA then strongly regularised XGBoost trees (XGBoost's UBJ).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin

from music_pipeline.genre.data import FEATURE_SETS, block_weights, feature_view, view_blocks

FAMILIES = ("logreg", "svm", "knn", "xgb")


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
    family: str  # logreg | svm | knn | xgb
    features: str = "full"  # a view of data.FEATURE_SETS
    pca: int | None = None  # xgb: number of PCA components
    max_depth: int = 2  # xgb
    C: float = 0.1  # logreg / svm: inverse regularisation strength
    k: int = 7  # knn neighbours

    @property
    def name(self) -> str:
        if self.family == "xgb":
            return f"xgb[{self.features}, pca={self.pca}, depth={self.max_depth}]"
        if self.family in ("logreg", "svm"):
            return f"{self.family}[{self.features}, C={self.C:g}]"
        return f"knn[{self.features}, k={self.k}]"

    @classmethod
    def parse(cls, name: str) -> Candidate:
        """The inverse of ``name``: 'logreg[learned, C=0.05]' → Candidate('logreg', 'learned', C=0.05)."""
        import re

        m = re.fullmatch(r"\s*(\w+)\[\s*(\w+)\s*((?:,\s*\w+=[\w.+-]+\s*)*)\]\s*", name)
        if not m or m.group(1) not in FAMILIES:
            raise ValueError(
                f"not a candidate name: {name!r} (e.g. 'logreg[learned, C=0.05]', 'svm[fusion, C=1]', 'knn[learned, k=7]', 'xgb[full, pca=15, depth=2]')"
            )
        kwargs: dict = {"family": m.group(1), "features": m.group(2)}
        for part in filter(None, (p.strip() for p in m.group(3).split(","))):
            key, value = part.split("=")
            field_ = {"depth": "max_depth"}.get(key, key)
            if field_ not in ("pca", "max_depth", "C", "k"):
                raise ValueError(f"{name!r}: unknown setting {key!r}")
            kwargs[field_] = float(value) if field_ == "C" else int(value)
        if kwargs["features"] not in FEATURE_SETS:
            raise ValueError(f"{name!r}: unknown view {kwargs['features']!r} (choose from {FEATURE_SETS})")
        return cls(**kwargs)

    @property
    def kind(self) -> str:
        """family + feature view: one row per kind in the comparison table."""
        return f"{self.family}[{self.features}]"

    @property
    def blocks(self) -> tuple[str, ...]:
        return view_blocks(self.features)


class ColumnWeights(TransformerMixin, BaseEstimator):
    """Multiplies each column by a fixed weight (the fusion view's block balance)."""

    def __init__(self, weights=None):
        self.weights = weights

    def fit(self, X, y=None):
        self.n_features_in_ = np.asarray(X).shape[1]
        return self

    def transform(self, X):
        return np.asarray(X) * self.weights


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def svm_logits(svc, X) -> np.ndarray:
    """One-vs-rest decision values as (n, classes) logits; a binary SVC gives (−d, d)."""
    d = svc.decision_function(X)
    return np.column_stack([-d, d]) if d.ndim == 1 else d


class TemperatureSvm(ClassifierMixin, BaseEstimator):
    """RBF SVC whose one-vs-rest decision values become probabilities by temperature scaling
    (``CalibratedClassifierCV(method="temperature", ensemble=False)``: the SVC is fitted on all
    rows, the temperature on cross-validated decision values)."""

    def __init__(self, C: float = 1.0, seed: int = 0):
        self.C = C
        self.seed = seed

    def fit(self, X, y):
        from sklearn.calibration import CalibratedClassifierCV
        from sklearn.svm import SVC

        svc = SVC(C=self.C, kernel="rbf", gamma="scale", class_weight="balanced", decision_function_shape="ovr")
        counts = np.bincount(np.searchsorted(np.unique(y), y))
        cv = int(min(3, counts.min())) if counts.min() >= 2 else None
        if cv is None:  # a class with one track: no held-out decision values to calibrate on
            self.svc_, self.beta_ = svc.fit(X, y), 1.0
        else:
            cal = CalibratedClassifierCV(svc, method="temperature", ensemble=False, cv=cv).fit(X, y)
            inner = cal.calibrated_classifiers_[0]
            self.svc_, self.beta_ = inner.estimator, float(inner.calibrators[0].beta_)
        self.classes_ = self.svc_.classes_
        self.n_features_in_ = self.svc_.n_features_in_
        return self

    def decision_function(self, X):
        return svm_logits(self.svc_, X)

    def predict_proba(self, X):
        return softmax(self.beta_ * self.decision_function(X))

    def predict(self, X):
        return self.classes_[self.predict_proba(X).argmax(axis=1)]


def build_pipeline(c: Candidate, n_train: int, n_features: int, n_classes: int, xgb_settings: XgbSettings, seed: int):
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    steps = [("scale", StandardScaler())]
    w = block_weights(c.features)
    if w is not None:
        steps.append(("weights", ColumnWeights(w)))
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
    elif c.family == "svm":
        est = TemperatureSvm(C=c.C, seed=seed)
    elif c.family == "knn":
        est = KNeighborsClassifier(n_neighbors=max(1, min(c.k, n_train)), weights="distance")
    else:
        raise ValueError(f"unknown model family {c.family!r}")
    steps.append(("model", est))
    return Pipeline(steps)


class GenreModel:
    """A fitted view → scaler → [weights] → [PCA] → estimator, with its class names."""

    def __init__(
        self, candidate: Candidate, classes: list[str], pipeline, view_names: list[str], info: dict | None = None
    ):
        self.candidate = candidate
        self.classes = list(classes)
        self.pipeline = pipeline
        self.view_names = view_names
        self.info = dict(info or {})

    @classmethod
    def fit(
        cls, candidate: Candidate, X, labels: Sequence[str], seed: int = 0, xgb_settings: XgbSettings | None = None
    ) -> GenreModel:
        """``X``: blocks (``data.Inputs``) or a bare (n, 641) array for the hand-crafted views."""
        from sklearn.utils.class_weight import compute_sample_weight

        labels = np.asarray(labels).astype(str)
        classes = sorted(set(labels))
        if len(classes) < 2:
            raise ValueError("a classifier needs at least 2 labels")
        y = np.searchsorted(classes, labels)
        Xv, names = feature_view(X, candidate.features)
        pipe = build_pipeline(candidate, len(y), Xv.shape[1], len(classes), xgb_settings or XgbSettings(), seed)
        fit_params = {}
        if candidate.family == "xgb":  # balanced accuracy is the target: weight classes equally
            fit_params["model__sample_weight"] = compute_sample_weight("balanced", y)
        pipe.fit(Xv, y, **fit_params)
        info = {"n_train": len(y), "seed": seed, "xgb_settings": asdict(xgb_settings or XgbSettings())}
        return cls(candidate, classes, pipe, names, info)

    def view(self, X) -> np.ndarray:
        return feature_view(X, self.candidate.features)[0]

    def predict_proba(self, X) -> np.ndarray:
        return self.pipeline.predict_proba(self.view(X))

    def predict(self, X) -> np.ndarray:
        return np.asarray(self.classes, dtype=object)[self.predict_proba(X).argmax(axis=1)]

    @property
    def is_xgb(self) -> bool:
        return self.candidate.family == "xgb"

    @property
    def is_linear(self) -> bool:
        return self.candidate.family == "logreg"

    def scaled_view(self, X) -> np.ndarray:
        return self.pipeline.named_steps["scale"].transform(self.view(X))

    def model_space(self, X) -> np.ndarray:
        """What the final estimator sees (weighted, and PCA components for XGBoost)."""
        return self.pipeline[:-1].transform(self.view(X))

    @property
    def needs(self) -> tuple[str, ...]:
        """The input blocks this model reads."""
        return self.candidate.blocks
