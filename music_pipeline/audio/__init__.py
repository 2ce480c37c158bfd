"""Finding, identifying and decoding audio files. No Dagster here."""
