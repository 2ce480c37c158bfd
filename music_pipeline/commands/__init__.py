"""CLI command groups (see music_pipeline/cli.py)."""
