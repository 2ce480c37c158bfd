"""Saving and loading a fitted genre model without pickle.

A model directory holds:

* ``model.json`` — format, candidate (family, view, settings), the input blocks with a hash of
  their column names (and the learned-embedding version when the view reads it), the view's column
  names, SHA-256 of every other file, fit info;
* ``classes.json``;
* ``preprocess.npz`` — scaler mean/scale/var, block weights (fusion view), PCA parameters (xgb);
* the estimator: ``logreg.npz`` (coef, intercept), ``svm.npz`` (support vectors, dual
  coefficients, intercepts, support counts, gamma, temperature), ``knn.npz`` (training rows and
  codes) or ``xgb_model.ubj`` (XGBoost's own UBJSON).

Loading rebuilds the sklearn objects from these arrays, checks every hash, and refuses a model
whose inputs no longer match (another embedding layout or learned-embedding version).
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict

import numpy as np

from music_pipeline.artifacts import (
    ArtifactPath,
    artifact_path,
    atomic_path,
    ensure_dir,
    read_bytes,
    read_json,
    read_npz,
    write_json,
    write_npz,
)
from music_pipeline.genre.candidates import Candidate, ColumnWeights, GenreModel, TemperatureSvm
from music_pipeline.genre.data import BLOCK_COLUMNS, LEARNED, TAGS
from music_pipeline.learned.store import LEARNED_CODE_VERSION

FORMAT = "music_pipeline.genre_model/2"


class ModelFileError(RuntimeError):
    """A saved model directory is missing, incomplete or does not match its manifest."""


def _sha256_file(p: ArtifactPath) -> str:
    return hashlib.sha256(read_bytes(p)).hexdigest()


def _sha256_text(s: str) -> str:
    return hashlib.sha256(s.encode()).hexdigest()


def input_signature(blocks) -> dict:
    """What the model's inputs must be: per block its width and a hash of its column names."""
    sig = {
        b: {"n_features": len(BLOCK_COLUMNS[b]), "names_sha256": _sha256_text("\n".join(BLOCK_COLUMNS[b]))}
        for b in blocks
    }
    if LEARNED in blocks or TAGS in blocks:
        sig["learned_code_version"] = LEARNED_CODE_VERSION
    return sig


def _estimator_arrays(model: GenreModel) -> dict[str, np.ndarray]:
    est = model.pipeline.named_steps["model"]
    fam = model.candidate.family
    if fam == "logreg":
        return {"coef": est.coef_, "intercept": est.intercept_}
    if fam == "svm":
        s = est.svc_
        return {
            "support_vectors": s.support_vectors_,
            "support": s.support_,
            "dual_coef": s._dual_coef_,
            "intercept": s._intercept_,
            "n_support": s._n_support,
            "gamma": np.float64(s._gamma),
            "class_weight": s.class_weight_,
            "classes": s.classes_,
            "beta": np.float64(est.beta_),
            "n_features": np.int64(s.n_features_in_),
        }
    if fam == "knn":
        return {"fit_X": est._fit_X, "fit_y": est._y, "n_neighbors": np.int64(est.n_neighbors)}
    raise ValueError(f"no array format for {fam}")


def save_model(model: GenreModel, directory: ArtifactPath) -> ArtifactPath:
    """Write the model files into ``directory`` (a fresh directory: see ``versions.publish_version``)."""
    directory = ensure_dir(directory)
    steps = model.pipeline.named_steps
    scale = steps["scale"]
    pre = {
        "scale_mean": scale.mean_,
        "scale_scale": scale.scale_,
        "scale_var": scale.var_,
        "n_samples_seen": np.int64(scale.n_samples_seen_),
    }
    if "weights" in steps:
        pre["block_weights"] = np.asarray(steps["weights"].weights)
    if "pca" in steps:
        pca = steps["pca"]
        pre.update(
            pca_components=pca.components_,
            pca_mean=pca.mean_,
            pca_explained_variance=pca.explained_variance_,
            pca_explained_variance_ratio=pca.explained_variance_ratio_,
            pca_singular_values=pca.singular_values_,
            pca_noise_variance=np.float64(pca.noise_variance_),
            pca_n_samples=np.int64(pca.n_samples_),
        )
    files = {
        "preprocess.npz": write_npz(directory / "preprocess.npz", pre),
        "classes.json": write_json(directory / "classes.json", model.classes),
    }
    if model.is_xgb:
        est_file = directory / "xgb_model.ubj"
        with atomic_path(est_file, suffix=".ubj") as tmp:  # xgboost picks the format from the suffix
            steps["model"].save_model(str(tmp))
        files["xgb_model.ubj"] = est_file
    else:
        name = f"{model.candidate.family}.npz"
        files[name] = write_npz(directory / name, _estimator_arrays(model))
    manifest = {
        "format": FORMAT,
        "candidate": asdict(model.candidate),
        "name": model.candidate.name,
        "input": input_signature(model.needs),
        "view_names": model.view_names,
        "files": {n: _sha256_file(p) for n, p in files.items()},
        "info": model.info,
    }
    write_json(directory / "model.json", manifest)
    return directory


def _svm_from_arrays(a: dict, C: float) -> TemperatureSvm:
    from sklearn.svm import SVC

    svc = SVC(C=C, kernel="rbf", gamma="scale", class_weight="balanced", decision_function_shape="ovr")
    svc.support_vectors_, svc.support_ = a["support_vectors"], a["support"]
    svc._dual_coef_, svc.dual_coef_ = a["dual_coef"], a["dual_coef"]
    svc._intercept_, svc.intercept_ = a["intercept"], -a["intercept"]
    svc._n_support, svc._gamma, svc.class_weight_, svc.classes_ = (
        a["n_support"],
        float(a["gamma"]),
        a["class_weight"],
        a["classes"],
    )
    svc._probA = svc._probB = np.empty(0)
    svc._sparse, svc.fit_status_, svc.n_features_in_ = False, 0, int(a["n_features"])
    svc.shape_fit_ = (int(a["support"].max(initial=0)) + 1, int(a["n_features"]))
    svc.n_iter_ = np.zeros(len(a["intercept"]), dtype=np.int32)
    est = TemperatureSvm(C=C)
    est.svc_, est.beta_, est.classes_, est.n_features_in_ = svc, float(a["beta"]), a["classes"], int(a["n_features"])
    return est


def load_model(directory: ArtifactPath) -> GenreModel:
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
        raise ModelFileError(
            f"{manifest_path}: unsupported format {manifest.get('format')!r} (expected {FORMAT}); rebuild the genre classifier"
        )
    candidate = Candidate(**manifest["candidate"])
    if manifest["input"] != input_signature(candidate.blocks):
        raise ModelFileError(
            f"{directory}: model was trained on other inputs (embedding layout or learned-embedding version); retrain it"
        )
    for name, digest in manifest["files"].items():
        p = directory / name
        if not p.is_file() or _sha256_file(p) != digest:
            raise ModelFileError(f"{p}: missing or does not match model.json (interrupted write or edited file)")
    classes = [str(c) for c in read_json(directory / "classes.json")]
    pre = read_npz(directory / "preprocess.npz")
    scale = StandardScaler()
    scale.mean_, scale.scale_, scale.var_ = pre["scale_mean"], pre["scale_scale"], pre["scale_var"]
    scale.n_features_in_, scale.n_samples_seen_ = len(scale.mean_), int(pre["n_samples_seen"])
    steps = [("scale", scale)]
    if "block_weights" in pre:
        steps.append(("weights", ColumnWeights(pre["block_weights"]).fit(np.zeros((1, len(pre["block_weights"]))))))
    if "pca_components" in pre:
        comps = pre["pca_components"]
        pca = PCA(n_components=comps.shape[0], svd_solver="full")
        pca.components_, pca.mean_ = comps, pre["pca_mean"]
        pca.explained_variance_, pca.explained_variance_ratio_ = (
            pre["pca_explained_variance"],
            pre["pca_explained_variance_ratio"],
        )
        pca.singular_values_, pca.noise_variance_ = pre["pca_singular_values"], float(pre["pca_noise_variance"])
        pca.n_components_, pca.n_features_in_, pca.n_samples_ = (
            comps.shape[0],
            comps.shape[1],
            int(pre["pca_n_samples"]),
        )
        steps.append(("pca", pca))
    fam = candidate.family
    if fam == "xgb":
        from xgboost import XGBClassifier

        est = XGBClassifier()
        est.load_model(bytearray(read_bytes(directory / "xgb_model.ubj")))
    elif fam == "logreg":
        arrs = read_npz(directory / "logreg.npz")
        est = LogisticRegression(C=candidate.C)
        est.coef_, est.intercept_ = arrs["coef"], arrs["intercept"]
        est.classes_, est.n_features_in_, est.n_iter_ = np.arange(len(classes)), arrs["coef"].shape[1], np.array([0])
    elif fam == "svm":
        est = _svm_from_arrays(read_npz(directory / "svm.npz"), candidate.C)
    elif fam == "knn":
        arrs = read_npz(directory / "knn.npz")
        est = KNeighborsClassifier(n_neighbors=int(arrs["n_neighbors"]), weights="distance").fit(
            arrs["fit_X"], arrs["fit_y"]
        )
    else:
        raise ModelFileError(f"{directory}: unknown model family {fam!r}")
    steps.append(("model", est))
    return GenreModel(candidate, classes, Pipeline(steps), manifest["view_names"], manifest.get("info", {}))
