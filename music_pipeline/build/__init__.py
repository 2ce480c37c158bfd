"""The build service: what ``music-pipeline build`` (and ``demo``) run, on the core side of the house.

- ``runner.py``: validate the library, take the data directory's lock, plan the partitions (with the
  one planner of ``defs/partitions.py`` the sensor shares), run the ingest and model jobs through
  Dagster in this process, and return a ``BuildSummary``; progress goes out as ``RunEvent``s.

Unlike the pure core (features, difficulty, genre, search …) this package drives Dagster, as the CLI
and the UI do; ``defs/`` only declares what it runs.
"""
