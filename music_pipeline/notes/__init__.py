"""Notes: what is played in a track, heard by a transcription model, and what they say about how
hard it is to play.

- ``transcribe.py``: audio → note events (basic-pitch's ONNX model on onnxruntime, pinned weights)
- ``basic_pitch_port.py``: basic-pitch's windowing and note creation (Apache-2.0, attributed)
- ``events.py``: the ``NoteEvents`` arrays, MIDI in and out
- ``score.py``: symbolic complexity of a score (the reference the PDI is validated against)
- ``store.py``: per-content-hash cache of notes and descriptors, the worker pool

The note descriptors (notes/s, polyphony, range, …) live in ``difficulty/note_descriptors.py``.
Importing this package is cheap: onnxruntime is imported only when a transcription runs.
"""
