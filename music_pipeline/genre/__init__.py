"""Genre classification, measured the honest way (pure core: no Dagster). Import from the modules:

* ``data`` — labelled tracks, groups, input blocks and feature views (641 hand-crafted dims, the
  learned embedding, their fusion, tag scores);
* ``candidates`` — the candidate models (logistic regression, RBF SVM, KNN, PCA + XGBoost) and
  ``GenreModel`` (fit / predict);
* ``cv`` — folds that keep sources apart, every candidate on the same folds, the nested estimate of
  the deployed procedure with its bootstrap CI;
* ``persistence`` — saving and loading a ``GenreModel`` without pickle (``save_model`` / ``load_model``);
* ``versions`` — the version store: model versions on disk and ``CURRENT.json``;
* ``training`` — the whole training run (selection, deployment, per-track predictions and
  explanations) and its publication;
* ``report`` — the CV report, the model card, the Markdown report and the plots it draws;
* ``explain`` — attributions of the deployed model (SHAP), the tagger's plain words, nearest
  training tracks, boundary songs;
* ``plots`` — the confusion matrix and the SHAP figures;
* ``serving`` — classifying audio files with the saved model (``classify``, the web app);
* ``comparison`` — the reference comparison: CNN / GLCM / segment-level approaches on the same folds.
"""
