"""Genre classification, measured the honest way. One concern per file:

* ``data.py`` — data preparation: labelled tracks, groups, input blocks and feature views
  (641 hand-crafted dims, the learned embedding, their fusion, tag scores);
* ``candidates.py`` — the candidate models (logistic regression, RBF SVM, KNN, PCA + XGBoost) and
  ``GenreModel`` (fit / predict);
* ``cv.py`` — folds that keep sources apart, every candidate on the same folds, the nested
  estimate of the deployed procedure with its bootstrap CI;
* ``persistence.py`` — saving and loading a model without pickle;
* ``publishing.py`` — model versions on disk, the CV report, the model card;
* ``training.py`` — the whole training run the ``genre_classifier`` asset wires (selection,
  deployment, per-track predictions and explanations);
* ``serving.py`` — classifying audio files with the saved model (``classify``, the web app).

Everything a caller needs is importable from ``music_pipeline.models.genre``.
"""

from music_pipeline.models.genre.candidates import FAMILIES, Candidate, GenreModel, XgbSettings
from music_pipeline.models.genre.cv import (
    DEFAULT_CANDIDATES,
    Estimate,
    Evaluation,
    FoldPlan,
    SearchConfig,
    coarser_plan,
    evaluate,
    fit_deployed,
    fold_assignment,
    headline,
    majority_baseline,
    make_folds,
    metrics,
    plan_from_assignment,
    to_jsonable,
)
from music_pipeline.models.genre.data import (
    FEATURE_SETS,
    LabelledData,
    MissingInputs,
    feature_view,
    inputs_of,
    labelled_data,
)
from music_pipeline.models.genre.persistence import ModelFileError
from music_pipeline.models.genre.publishing import current_version, publish_version

__all__ = [
    "DEFAULT_CANDIDATES",
    "FAMILIES",
    "FEATURE_SETS",
    "Candidate",
    "Estimate",
    "Evaluation",
    "FoldPlan",
    "GenreModel",
    "LabelledData",
    "MissingInputs",
    "ModelFileError",
    "SearchConfig",
    "XgbSettings",
    "coarser_plan",
    "current_version",
    "evaluate",
    "feature_view",
    "fit_deployed",
    "fold_assignment",
    "headline",
    "inputs_of",
    "labelled_data",
    "majority_baseline",
    "make_folds",
    "metrics",
    "plan_from_assignment",
    "publish_version",
    "to_jsonable",
]
