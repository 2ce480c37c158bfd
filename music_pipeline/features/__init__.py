"""Per-track features from one decode and one pass of spectral analysis (``extract``), and their
by-product the harmonic sequence (``harmonic``, what ``identity.versions`` compares). No Dagster here."""
