"""Notes: transcription of synthesized note lists (onset F1 with mir_eval), the ported note
creation, the budget, loudness normalisation, note descriptors, the note store and track_notes."""

import json
import os
import subprocess
import sys

import mir_eval
import numpy as np
import pytest
import soundfile as sf

from music_pipeline.difficulty.note_descriptors import NOTE_DESCRIPTOR_NAMES, note_descriptors
from music_pipeline.notes import basic_pitch_port as bp
from music_pipeline.notes.events import NoteEvents, read_midi, write_midi
from music_pipeline.notes.generate import PieceSpec, generate_piece, render
from music_pipeline.notes.score import complexity_composite, symbolic_measures
from music_pipeline.notes.store import NotesJob, NotesStore, run_notes_job, transcribe_many
from music_pipeline.notes.transcribe import (
    DEFAULT_BUDGET,
    SR,
    Budget,
    Transcriber,
    default_threads,
    drop_overtones,
    loudness_gain_db,
    plan_excerpts,
)

from .audio_corpus import write


@pytest.fixture(scope="module")
def transcriber():
    return Transcriber(threads=1)


def _onset_f1(ref: NoteEvents, est: NoteEvents) -> float:
    hz = lambda p: 440.0 * 2 ** ((p.astype(float) - 69) / 12)
    _, _, f1, _ = mir_eval.transcription.precision_recall_f1_overlap(
        np.c_[ref.onset, ref.offset],
        hz(ref.pitch),
        np.c_[est.onset, est.offset],
        hz(est.pitch),
        onset_tolerance=0.05,
        offset_ratio=None,
    )
    return f1


@pytest.mark.parametrize(
    "spec, minimum",
    [
        (PieceSpec(seconds=10, onsets_per_s=2.5, range_semitones=14, seed=1), 0.95),  # a melody
        (
            PieceSpec(
                seconds=10, onsets_per_s=4, voices=3, chord_share=0.5, range_semitones=24, irregularity=0.5, seed=2
            ),
            0.8,
        ),  # chords, irregular
    ],
)
def test_transcription_finds_the_generated_notes(transcriber, spec, minimum):
    ref = generate_piece(spec)
    est = transcriber.transcribe(render(ref)).notes
    f1 = _onset_f1(ref, est)
    assert f1 >= minimum, f"onset F1 {f1:.3f} (reference {len(ref)} notes, transcribed {len(est)})"
    # times are where the notes are: the median onset error of matched notes is under a frame
    errors = [
        est.onset[est.pitch == p][np.argmin(np.abs(est.onset[est.pitch == p] - o))] - o
        for o, p in zip(ref.onset, ref.pitch, strict=True)
        if (est.pitch == p).any()
    ]
    assert abs(np.median(errors)) < 0.012


def test_loudness_is_normalised_before_the_model(transcriber):
    ref = generate_piece(PieceSpec(seconds=8, onsets_per_s=3, voices=2, chord_share=0.4, seed=5))
    y = render(ref)
    assert loudness_gain_db(0.25 * y) == pytest.approx(loudness_gain_db(y) + 12.04, abs=0.01)
    a, b = transcriber.transcribe(y).notes, transcriber.transcribe(0.25 * y).notes
    assert len(a) == len(b) and (a.pitch == b.pitch).all()
    np.testing.assert_allclose(a.onset, b.onset, atol=0.012)


def test_budget_spreads_excerpts_over_a_long_track():
    hop, budget = bp.WINDOW_HOP, DEFAULT_BUDGET
    short = int(budget.max_seconds / 2) * SR
    assert plan_excerpts(short) == [(0, int(np.ceil(short / hop)))]  # short: whole
    plan = plan_excerpts(600 * SR)
    assert len(plan) == budget.excerpts
    total = sum(n for _, n in plan) * hop / SR
    assert 0.8 * budget.max_seconds <= total <= budget.max_seconds
    starts = [s for s, _ in plan]
    assert starts == sorted(starts) and starts[0] > 0 and starts[-1] + plan[-1][1] * hop <= 600 * SR
    gaps = np.diff(starts) / SR
    assert gaps.min() > 0.9 * 600 / budget.excerpts  # spread over the whole track, not bunched at its start
    wider = plan_excerpts(600 * SR, Budget(max_seconds=60, excerpts=6))
    assert len(wider) == 6 and sum(n for _, n in wider) == 2 * sum(n for _, n in plan)
    with pytest.raises(ValueError):
        Budget(max_seconds=5, excerpts=6)


def test_a_long_track_is_transcribed_within_the_budget(transcriber):
    notes = generate_piece(PieceSpec(seconds=150, onsets_per_s=2, seed=3))
    t = transcriber.transcribe(render(notes))
    assert t.notes.covered_s <= DEFAULT_BUDGET.max_seconds and len(t.notes.spans) == DEFAULT_BUDGET.excerpts
    assert t.duration_s == pytest.approx(150, abs=0.1)
    for k in range(len(t.notes.spans)):  # notes only where the model listened
        idx = t.notes.in_span(k)
        assert len(idx) > 0
    inside = sum(len(t.notes.in_span(k)) for k in range(len(t.notes.spans)))
    assert inside == len(t.notes)


def test_batching_windows_across_excerpts_changes_no_activation_and_no_note(transcriber):
    y = render(generate_piece(PieceSpec(seconds=150, onsets_per_s=4, voices=3, chord_share=0.5, seed=8)))
    plan = plan_excerpts(len(y))
    cut = [bp.excerpt_windows(y, start, n) for start, n in plan]
    windows = np.concatenate([w for w, _ in cut])
    frames, onsets = transcriber.activations(windows)  # batches of BATCH_WINDOWS, across excerpts
    one = [transcriber.session.run([bp.NOTE_OUTPUT, bp.ONSET_OUTPUT], {bp.INPUT_NAME: w[None]}) for w in windows]
    assert np.array_equal(frames, np.concatenate([bp.unwrap(f) for f, _ in one]))
    assert np.array_equal(onsets, np.concatenate([bp.unwrap(o) for _, o in one]))
    # the path before batching: each excerpt's windows on their own, then note creation per excerpt
    gain = loudness_gain_db(y)
    scaled = y * np.float32(10 ** (gain / 20))
    parts = []
    for start, n in plan:
        end = min(start + n * bp.WINDOW_HOP, len(y))
        w, times = bp.excerpt_windows(scaled, start, n)
        f, o = transcriber.activations(w)
        keep = times < end / SR
        f, o, times = f[keep], o[keep], times[keep]
        parts += [(times[s], times[min(e, len(times) - 1)], p, a) for s, e, p, a in bp.output_to_notes_polyphonic(f, o)]
    arr = np.array(parts, dtype=np.float64)
    old = drop_overtones(NoteEvents(arr[:, 0], arr[:, 1], arr[:, 2].astype(np.int16), arr[:, 3], []))
    new = transcriber.transcribe(y).notes
    assert len(new) == len(old) > 100
    for field in ("onset", "offset", "pitch", "confidence"):
        assert np.array_equal(getattr(new, field), getattr(old, field)), field


def test_each_worker_opens_one_session_before_its_first_track(tmp_path, monkeypatch):
    from functools import partial

    from music_pipeline import workers
    from music_pipeline.notes import store

    from .session_probe import probed_run_notes_job

    data = str(tmp_path / "data")
    paths = [write(tmp_path / f"t{i}.wav", render(generate_piece(PieceSpec(seconds=4, seed=i)))) for i in range(6)]
    jobs = [NotesJob(p.stem, str(p), p.name, f"hash{p.stem}", data) for p in paths]
    monkeypatch.setattr(workers, "estimated_audio_seconds", lambda path: workers.AUDIO_SECONDS_PER_WORKER)
    results = {}
    workers.run_pending(
        jobs,
        range(len(jobs)),
        probed_run_notes_job,
        results.__setitem__,
        lambda job: None,
        workers=2,
        warm=partial(store._warm, data),
    )
    assert [results[i][3] for i in range(len(jobs))] == ["transcribed"] * len(jobs)
    assert all(warm for _, warm, _, _ in results.values())  # opened by the warm-up, not by a track
    sessions = {}
    for pid, _, session, _ in results.values():
        sessions.setdefault(pid, set()).add(session)
    assert 1 <= len(sessions) <= 2 and all(len(s) == 1 for s in sessions.values())
    assert os.getpid() not in sessions


def test_session_threads_default_to_the_cores_and_the_pool_uses_one(monkeypatch):
    from music_pipeline.notes import store

    assert Transcriber().threads == default_threads() >= 1
    assert Transcriber(threads=1).threads == 1
    monkeypatch.setattr(store, "_TRANSCRIBER", None)
    assert store._transcriber(None).threads == 1


def test_onset_peaks_are_scipys_argrelmax_without_scipy(transcriber):
    import scipy.signal

    rng = np.random.default_rng(0)
    y = render(generate_piece(PieceSpec(seconds=12, onsets_per_s=5, voices=3, chord_share=0.6, seed=11)))
    windows, _ = bp.excerpt_windows(y, 0, plan_excerpts(len(y))[0][1])
    frames, onsets = transcriber.activations(windows)
    cases = [
        bp.infer_onsets(onsets, frames),
        np.round(rng.random((300, 88)), 1),  # many ties and plateaus
        rng.random((3, 88)),
        np.zeros((40, 88)),
    ]
    for a in cases:
        ours, theirs = bp.argrelmax_rows(a), scipy.signal.argrelmax(a, axis=0)
        assert len(ours) == len(theirs) == 2
        assert all(np.array_equal(o, t) for o, t in zip(ours, theirs, strict=True))


def test_note_creation_port_on_handmade_activations():
    frames = np.zeros((100, 88))
    onsets = np.zeros((100, 88))
    frames[10:40, 39] = 0.9  # C4 (MIDI 60 = bin 39), 30 frames
    onsets[10, 39] = 0.9
    frames[50:80, 43] = 0.8  # E4 with no onset: only the melodia trick finds it
    frames[60:65, 20] = 0.9  # too short for the 11-frame minimum
    notes = bp.output_to_notes_polyphonic(frames, onsets, infer=False)
    # (the melodia pass ends a note one frame before the last active one, as basic-pitch does)
    assert sorted((s, e, p) for s, e, p, _ in notes) == [(10, 40, 60), (50, 79, 64)]
    assert bp.output_to_notes_polyphonic(frames, onsets, infer=False, melodia_trick=False)[0][:3] == (10, 40, 60)
    assert len(bp.output_to_notes_polyphonic(frames, onsets, infer=False, melodia_trick=False)) == 1
    # silence: no division by zero, no notes
    assert bp.output_to_notes_polyphonic(np.zeros((50, 88)), np.zeros((50, 88))) == []


def _notes(onsets, pitches, dur=0.2, span=(0.0, 10.0)):
    return NoteEvents(
        np.array(onsets, float), np.array(onsets, float) + dur, np.array(pitches), np.ones(len(onsets)), [span]
    )


def test_note_descriptors_of_known_note_lists():
    # an even melody: 4 onsets/s for 10 s, C4..G4
    mel = _notes(np.arange(0, 10, 0.25), [60 + (i % 8) for i in range(40)])
    d = note_descriptors(mel)
    assert list(d) == NOTE_DESCRIPTOR_NAMES
    assert d["notes_per_s"] == d["onset_rate"] == pytest.approx(4.0)
    assert d["chord_size"] == 1 and d["chord_span"] == 0 and d["mean_polyphony"] == pytest.approx(1.0)
    assert d["ioi_entropy"] == 0.0 and d["ioi_cv"] == pytest.approx(0.0, abs=1e-9)
    assert d["fast_run_share"] == 0.0  # 250 ms is not fast
    assert d["pitch_range"] == pytest.approx(np.percentile(mel.pitch, 98) - np.percentile(mel.pitch, 2))
    # triads every half second, 8th-note runs of 0.1 s between them
    on, p = [], []
    for t in np.arange(0, 10, 1.0):
        on += [t, t, t]
        p += [48, 52, 55]
        on += list(t + 0.5 + 0.1 * np.arange(5))
        p += [72, 74, 76, 77, 79]
    d2 = note_descriptors(_notes(on, p, dur=0.09))
    assert d2["notes_per_s"] == pytest.approx(8.0)
    assert d2["onset_rate"] == pytest.approx(6.0)
    assert d2["chord_size"] == pytest.approx(8 / 6)
    assert d2["chord_span"] == pytest.approx(7.0)
    assert d2["peak_polyphony"] == 3.0
    assert d2["fast_run_share"] > 0.5 and d2["ioi_entropy"] > 0.5
    # nothing heard is zero, not an error; no span is an error
    assert set(note_descriptors(NoteEvents.empty([[0, 5]])).values()) == {0.0}
    with pytest.raises(ValueError):
        note_descriptors(NoteEvents.empty())


def test_intervals_are_not_measured_across_excerpts():
    two = NoteEvents(
        np.array([1.0, 1.5, 50.0, 50.5]),
        np.array([1.2, 1.7, 50.2, 50.7]),
        np.array([60, 62, 60, 62]),
        np.ones(4),
        [[0, 5], [48, 53]],
    )
    d = note_descriptors(two)
    assert d["notes_per_s"] == pytest.approx(4 / 10)
    assert d["ioi_cv"] == pytest.approx(0.0, abs=1e-9)  # the 48.5 s gap between excerpts is no interval


def test_symbolic_measures_and_composite():
    import pandas as pd

    slow = symbolic_measures(_notes(np.arange(0, 10, 1.0), [60] * 10))
    busy = symbolic_measures(_notes(sorted(list(np.arange(0, 10, 0.1)) * 2), [48, 79] * 100, dur=0.09))
    assert slow["pitch_range"] == 0 and busy["pitch_range"] == 31
    assert busy["notes_per_s"] > 10 * slow["notes_per_s"] and busy["mean_polyphony"] == pytest.approx(2.0, abs=0.05)
    c = complexity_composite(pd.DataFrame([slow, busy]))
    assert c.iloc[1] > c.iloc[0]


def test_midi_round_trip(tmp_path):
    notes = generate_piece(PieceSpec(seconds=6, onsets_per_s=3, voices=2, chord_share=0.5, seed=9))
    path = write_midi(notes, tmp_path / "out.mid")
    back = read_midi(path)
    assert len(back) == len(notes) and (back.pitch == notes.pitch).all()
    np.testing.assert_allclose(back.onset, notes.onset, atol=2e-3)


def test_store_caches_by_content_and_a_bad_file_fails_only_itself(tmp_path):
    good = write(tmp_path / "lib" / "good.wav", render(generate_piece(PieceSpec(seconds=6, seed=4))))
    silent = tmp_path / "lib" / "silent.wav"
    sf.write(silent, np.zeros(SR * 5, np.float32), SR)
    broken = tmp_path / "lib" / "broken.wav"
    broken.write_bytes(b"RIFF....WAVEfmt not really")
    data = str(tmp_path / "data")
    jobs = [NotesJob(p.stem, str(p), p.name, f"hash{p.stem}", data) for p in (good, silent, broken)]
    outcomes = transcribe_many(jobs, workers=1)
    assert [o.status for o in outcomes] == ["transcribed", "failed", "failed"]
    assert "silent" in outcomes[1].reason and "broken.wav" in outcomes[2].reason
    store = NotesStore(data)
    assert store.hashes() == {"hashgood"} and store.analysed_hashes() == {"hashgood", "hashsilent", "hashbroken"}
    stored = store.load("hashgood")
    assert len(stored.notes) > 5 and list(stored.descriptors) == NOTE_DESCRIPTOR_NAMES
    # second run: cached, and the broken ones are remembered, not retried
    again = [run_notes_job(j) for j in jobs]
    assert [o.status for o in again] == ["cached", "failed", "failed"]
    assert store.path("hashgood").name == "hashgood.npz" and f"-{DEFAULT_BUDGET.tag}" in str(store.path("hashgood"))


def test_embed_does_not_import_the_transcription(tmp_path):
    f = write(tmp_path / "t.wav", render(generate_piece(PieceSpec(seconds=4, seed=1))))
    code = (
        "import sys, io, contextlib\n"
        "from music_pipeline.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        f"    assert main(['embed', {str(f)!r}, '--json']) == 0\n"
        "print(json.dumps(sorted(m for m in ('onnxruntime', 'tensorflow', 'music_pipeline.notes.transcribe') if m in sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", "import json\n" + code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_track_notes_asset_materializes_partitions_and_records_failures(tmp_path):
    import dagster as dg

    from music_pipeline.defs.assets.notes import track_notes
    from music_pipeline.defs.resources import MusicPipelineResource
    from music_pipeline.defs.sensors import RANGE_END, RANGE_START

    lib = tmp_path / "lib"
    write(lib / "a" / "one.wav", render(generate_piece(PieceSpec(seconds=5, seed=1))))
    write(lib / "a" / "two.flac", render(generate_piece(PieceSpec(seconds=5, onsets_per_s=5, seed=2))))
    (lib / "a" / "zz_broken.wav").write_bytes(b"RIFF....not audio")
    pipeline = MusicPipelineResource(data_dir=str(tmp_path / "data"), library_dir=str(lib), workers=1)
    keys = sorted(t.key for t in pipeline.scan().tracks)
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("tracks", keys)
        result = dg.materialize(
            [track_notes],
            instance=instance,
            resources={"pipeline": pipeline},
            tags={RANGE_START: keys[0], RANGE_END: keys[-1]},
        )
        assert result.success  # the broken file fails only itself
        mats = result.asset_materializations_for_node("track_notes")
        assert sorted(m.partition for m in mats) == keys
        md = mats[0].metadata
        assert md["transcribed"].value == 2 and md["failed"].value == 1
        assert "zz_broken.wav" in md["failures"].value
        one = dg.materialize([track_notes], instance=instance, resources={"pipeline": pipeline}, partition_key=keys[0])
        md1 = one.asset_materializations_for_node("track_notes")[0].metadata
        assert md1["status"].value == "cached" and md1["notes"].value > 0 and md1["notes_per_s"].value > 0
