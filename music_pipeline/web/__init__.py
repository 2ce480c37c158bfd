"""The explorer (``music-pipeline serve``): a read-only web app to search, play and wander the library.

``explorer.Explorer`` answers every question without HTTP (over ``search.discovery.Discovery`` and
``search.results``, the CLI's own core); ``app`` is the Starlette app on top; ``audio`` serves the
library files (Range, transcoding) — playlist files come from ``playlists.formats`` —; ``facts`` is the one adapter to
the genre and difficulty models; ``status`` records where a running explorer listens. The pages are
plain files in ``static/``. Nothing here imports Dagster.
"""
