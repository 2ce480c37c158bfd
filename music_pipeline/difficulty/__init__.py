"""Difficulty: how hard a track is to perform or to follow (pure core: no Dagster). Import from the modules:

* ``descriptors`` — ``Descriptor``, the one descriptor type (name, family, unit, formula);
* ``audio_descriptors`` — the audio descriptors computed from the feature pass (librosa);
* ``note_descriptors`` — the note descriptors computed from ``NoteEvents``;
* ``pdi`` — the Perceptual Difficulty Index: scaling, levels, the model and its explanation;
* ``cnn`` — the segment CNN that predicts PDI levels;
* ``plots`` — the PDI and CNN figures.
"""
