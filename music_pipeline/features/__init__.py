"""Per-track features from one decode and one pass of spectral analysis. No Dagster here."""
