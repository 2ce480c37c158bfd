"""Which recording is this? Landmark fingerprints of every track (``fingerprint``), the index that
answers a clip with the library track it comes from and where in it (``index``), and the groups of
tracks that hold the same recording (``duplicates``). No Dagster here."""
