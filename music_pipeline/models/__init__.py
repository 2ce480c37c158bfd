"""What concerns every trained model, across domains (pure core: no Dagster). Import from the modules:

* ``cards`` — the model cards ``music-pipeline models`` prints (genre, difficulty, learned);
* ``staleness`` — when a library model is worth retraining (its training record per model).

The models themselves live with their domain: ``music_pipeline.genre`` and ``music_pipeline.difficulty``.
"""
