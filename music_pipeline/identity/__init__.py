"""Which recording is this, and which compositions does the library hold more than once? Landmark
fingerprints of every track (``fingerprint``, stored by ``store``), the index that answers a clip
with the library track it comes from and where in it (``index``, ``library``), the groups of
tracks that hold the same recording (``duplicates``), and the other performances of a track's
composition — another instrument, tempo or key — from the harmonic sequences the extraction stores
(``versions``; the sequences themselves: ``features.harmonic``). No Dagster here."""
