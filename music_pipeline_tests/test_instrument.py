"""The instrument heard beside the PDI: held tones joined, the family model, its correction."""

import numpy as np
import pytest

from music_pipeline.difficulty.instrument import (
    NOTE_READING,
    REFERENCE_FAMILY,
    TIMBRE_NAMES,
    UNFAMILIAR,
    InstrumentModel,
    fit_instrument_model,
    note_creation,
    timbre_vector,
)
from music_pipeline.difficulty.note_descriptors import NOTE_DESCRIPTOR_NAMES
from music_pipeline.notes import basic_pitch_port as bp
from music_pipeline.notes.events import NoteEvents
from music_pipeline.notes.transcribe import (
    DEFAULT_NOTE_CREATION,
    NoteCreation,
    Transcriber,
    drop_overtones,
    merge_rearticulations,
    notes_from_activations,
)

C4 = 60 - bp.MIDI_OFFSET


def _held_tone(second_onset: float) -> tuple[np.ndarray, np.ndarray]:
    """One C4 sounding through frames 10-80, with a second onset of the given strength at frame 45."""
    frames, onsets = np.zeros((100, 88)), np.zeros((100, 88))
    frames[10:80, C4] = 0.8
    onsets[10, C4], onsets[45, C4] = 0.9, second_onset
    return frames, onsets


@pytest.mark.parametrize(("second_onset", "expected"), [(0.55, 1), (0.9, 2)])
def test_a_held_tone_read_twice_is_one_note_unless_it_is_struck_again(second_onset, expected):
    frames, onsets = _held_tone(second_onset)
    found = bp.output_to_notes_polyphonic(frames, onsets, infer=False, melodia_trick=False)
    assert len(found) == 2  # the model's reading: two notes of the same pitch, end to end
    merged = merge_rearticulations(found, frames, onsets, NoteCreation())
    assert len(merged) == expected
    assert merged[0][0] == 10 and merged[-1][1] == found[0][1]  # from the first onset to the last frame


def test_a_tone_that_stopped_is_not_joined_to_the_next():
    frames, onsets = _held_tone(0.55)
    frames[40:45, C4] = 0.0  # a real gap: the tone stopped before the next note
    found = bp.output_to_notes_polyphonic(frames, onsets, infer=False, melodia_trick=False)
    assert len(merge_rearticulations(found, frames, onsets, NoteCreation())) == len(found) == 2


def _toy_model() -> InstrumentModel:
    """Two families told apart by the first timbre feature; the organ reads 4x the notes per second,
    and at the same note confidence its notes are read 0.4 worse (note F1) than the piano's."""
    rng = np.random.default_rng(0)
    n = 200
    timbre = rng.normal(0, 1, (2 * n, len(TIMBRE_NAMES)))
    timbre[n:, 0] += 6.0
    families = np.array([REFERENCE_FAMILY] * n + ["organ"] * n)
    desc = np.ones((2 * n, len(NOTE_DESCRIPTOR_NAMES)))
    x = rng.uniform(2, 4, n)
    desc[:, 0] = np.r_[x, x * 4 + 3]  # the same pieces: log(1+4x+3) = log(4)+log(1+x)
    confidence = rng.uniform(0.4, 0.8, 2 * n)
    f1 = confidence + np.where(families == "organ", -0.2, 0.2)
    return fit_instrument_model(timbre, families, desc, NOTE_DESCRIPTOR_NAMES, confidence, f1)


def test_the_reading_confidence_is_the_note_f1_expected_of_the_family_at_that_note_confidence():
    model = _toy_model()
    piano, organ = (model.heard(f, 0.9, 0.6).reading_confidence for f in (REFERENCE_FAMILY, "organ"))
    assert piano == pytest.approx(0.8) and organ == pytest.approx(0.4)
    assert model.heard("organ", 0.9, 0.7).reading_confidence == pytest.approx(0.5)  # rises with the note confidence
    assert model.heard(REFERENCE_FAMILY, 0.9, 1.0).reading_confidence == 1.0  # an F1: never above 1
    assert model.heard("organ", 0.9, 0.0).reading_confidence == 0.0
    # an unfamiliar timbre: the line over every family, between the two
    assert organ < model.heard(UNFAMILIAR, 0.9, 0.6).reading_confidence < piano


def test_the_correction_moves_a_family_onto_the_reference_and_leaves_the_reference_alone():
    model = _toy_model()
    values = np.full((1, len(NOTE_DESCRIPTOR_NAMES)), 1.0)
    values[0, 0] = 3.0
    piano = np.array([[1.0 if f == REFERENCE_FAMILY else 0.0 for f in model.families]])
    organ = 1.0 - piano
    assert np.allclose(model.correct(values, piano), values)
    assert model.correct(values * [4] + [3], organ)[0, 0] == pytest.approx(3.0, rel=0.05)
    # the same descriptors heard as organ count for less than heard as piano
    assert model.correct(values, organ)[0, 0] < values[0, 0]


def test_an_unfamiliar_timbre_keeps_its_descriptors():
    model = _toy_model()
    far = np.full(len(TIMBRE_NAMES), 50.0)
    descriptors = dict.fromkeys(NOTE_DESCRIPTOR_NAMES, 2.0)
    heard, fixed = model.heard_as(*model.family(far), descriptors, np.array([0.5, 0.7]))
    assert heard.family == UNFAMILIAR and fixed == descriptors and heard.note_confidence == pytest.approx(0.6)
    near = np.zeros(len(TIMBRE_NAMES))
    near[0] = -2.0  # well inside the piano renders
    heard, fixed = model.heard_as(*model.family(near), descriptors, np.array([0.5]))
    assert heard.family == REFERENCE_FAMILY and fixed == pytest.approx(descriptors, rel=0.05)


def test_the_shipped_model_loads_and_hears_the_same_family_at_any_level(tmp_path):
    from music_pipeline.artifacts import write_npz

    model = InstrumentModel.load()
    assert REFERENCE_FAMILY in model.families and model.descriptors == tuple(NOTE_DESCRIPTOR_NAMES)
    write_npz(tmp_path / "m.npz", model.arrays())  # plain arrays: it round-trips without pickle
    again = InstrumentModel.load(tmp_path / "m.npz")
    assert again.families == model.families and np.array_equal(again.coef, model.coef)
    sr = 22_050
    t = np.arange(4 * sr) / sr
    y = (np.sin(2 * np.pi * 220 * t) * np.exp(-3 * (t % 0.5))).astype(np.float32)  # a plucked A3, twice a second
    from music_pipeline.notes.store import heard_audio
    from music_pipeline.notes.transcribe import loudness_gain_db

    loud, quiet = (heard_audio(v, [(0.0, 4.0)], loudness_gain_db(v)) for v in (y, 0.25 * y))
    assert np.allclose(
        model.probabilities(timbre_vector(loud, sr)), model.probabilities(timbre_vector(quiet, sr)), atol=1e-3
    )


def test_every_family_has_its_reading_and_an_unfamiliar_timbre_is_read_as_a_piano():
    assert set(InstrumentModel.load().families) == set(NOTE_READING)
    assert note_creation(REFERENCE_FAMILY) == note_creation(UNFAMILIAR) == DEFAULT_NOTE_CREATION


@pytest.mark.parametrize(
    ("overtone_confidence", "kept_as_piano", "kept_as_organ"), [(0.55, 2, 1), (0.4, 1, 1), (0.9, 2, 2)]
)
def test_an_overtone_nearly_as_sure_as_its_note_is_a_note_on_a_piano_and_not_on_an_organ(
    overtone_confidence, kept_as_piano, kept_as_organ
):
    """C4 and the C5 above it, struck and released together: on a sustained organ an octave
    heard almost as surely as its fundamental is most likely its second partial."""
    notes = NoteEvents(
        np.array([1.0, 1.0]),
        np.array([2.0, 2.0]),
        np.array([60, 72], np.int16),
        np.array([0.6, overtone_confidence]),
        [(0.0, 3.0)],
    )
    for family, kept in ((REFERENCE_FAMILY, kept_as_piano), ("organ", kept_as_organ)):
        assert len(drop_overtones(notes, note_creation(family).overtone_confidence_ratio)) == kept


def test_the_notes_pass_reads_the_notes_as_the_family_heard_reads_them(monkeypatch):
    """The same activations read as an organ's, with the family and its probability reported."""
    from music_pipeline.notes import store

    sr = 22_050
    t = np.arange(6 * sr) / sr
    # a held organ-like C3 (rich in partials) under a melody of struck notes
    y = sum(np.sin(2 * np.pi * 130.81 * k * t) / k for k in range(1, 8))
    y = y + sum(
        np.sin(2 * np.pi * f * t) * np.exp(-4 * ((t - s) % 6)) * (t >= s)
        for s, f in ((1, 392.0), (2.5, 440.0), (4, 523.25))
    )
    y = (0.1 * y).astype(np.float32)
    transcriber = Transcriber(threads=1)
    acts = transcriber.excerpt_activations(y, sr)
    model = store.instrument_model()
    for family in ("organ", REFERENCE_FAMILY):
        p = np.array([0.9 if f == family else 0.1 / (len(model.families) - 1) for f in model.families])
        monkeypatch.setattr(InstrumentModel, "family", lambda self, timbre, family=family, p=p: (family, p))
        heard = store.notes_of_signal(y, sr, transcriber)
        expected = notes_from_activations(acts, note_creation(family))
        assert np.array_equal(heard.notes.pitch, expected.pitch) and np.allclose(heard.notes.onset, expected.onset)
        assert heard.heard.family == family and heard.heard.probability == pytest.approx(0.9)
