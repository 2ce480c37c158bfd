"""The library's playlists, from the audio alone.

``clusters`` groups the tracks (PCA of the learned embedding, a nearest-neighbour graph, k by its
eigengap, spectral clustering); ``describe`` names each group from what sets it apart (the
pretrained tagger's tags, the tempo, the difficulty level) and orders it neighbour to neighbour;
``library`` reads the tables, makes, saves and loads the playlists; ``formats`` writes M3U8 and
XSPF (also for the explorer's downloads). Nothing here imports Dagster.
"""
