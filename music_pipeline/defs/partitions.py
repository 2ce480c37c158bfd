import dagster as dg

# One partition per track; keys come from music_pipeline.audio.library.track_key.
tracks_partitions = dg.DynamicPartitionsDefinition(name="tracks")
