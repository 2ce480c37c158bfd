"""Models trained on the library tables (pure core: no Dagster).

Difficulty: ``pdi`` (the Perceptual Difficulty Index), ``cnn`` (segment CNN for PDI levels),
``difficulty_plots``. Genre: ``genre/`` (one concern per file: data preparation and feature views,
candidates, cross-validation and the estimate, pickle-free persistence, publishing, the training
run, serving ``classify``), ``explain`` (attributions of the deployed model and the tagger's plain
words), ``comparators`` (CNN / GLCM / segment-level approaches on the same folds). ``cards``:
the model cards ``music-pipeline models`` prints.
"""
