"""Listening history and recommendations (pure core: no Dagster). Import from the modules:

* ``history`` — the append-only event log of plays, skips and likes per listener;
* ``catalog`` / ``importing`` — which library track an event names; ``history import`` of
  ListenBrainz, Last.fm and plain JSONL/CSV files;
* ``recommender`` — the hybrid model (implicit ALS + a content model on the audio embedding);
* ``service`` — recommendations and listener radio of a data directory (the CLI, the explorer and
  the ``listening_model`` asset call it);
* ``simulate`` — simulated listeners for the benchmark and the tests.
"""
