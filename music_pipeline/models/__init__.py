"""Models trained on the library tables (pure core: no Dagster).

Difficulty: ``pdi`` (the Perceptual Difficulty Index), ``cnn`` (segment CNN for PDI levels),
``difficulty_plots``. Genre: ``genre`` (feature views, grouped cross-validation, the deployable
classifiers and their pickle-free on-disk format), ``explain`` (SHAP explanations in plain
language), ``comparators`` (CNN / GLCM / segment-level approaches on the same folds).
"""
