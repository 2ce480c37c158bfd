"""Progress reporting (core callbacks, run-log lines, the build display) and quiet native output."""

import io
import os
import subprocess
import sys
import textwrap

import pytest

from music_pipeline import progress, quiet, settings
from music_pipeline.build.runner import RunEvent
from music_pipeline.commands.display import BuildDisplay
from music_pipeline.progress import Progress


class FakeClock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def test_track_meter_reports_real_time_factor_and_eta():
    clock, seen = FakeClock(), []
    meter = progress.TrackMeter("extract", 4, seen.append, clock=clock)
    clock.t += 2.0
    meter.track_done(audio_seconds=180.0)  # 3 minutes of audio in 2 s of wall time
    assert seen[-1].eta_s is None  # one track (with the start-up in it) says nothing about the rest
    clock.t += 2.0
    meter.track_done(audio_seconds=None)  # cached: counts as done, adds no audio
    clock.t += 2.0
    meter.track_done(audio_seconds=60.0)
    p = seen[-1]
    assert (p.done, p.total, p.unit) == (3, 4, "tracks")
    assert p.detail == "40× real time"  # 240 s of audio / 6 s
    assert p.eta_s == pytest.approx(2.0)  # 2 s per track, 1 track left


def test_progress_lines_round_trip():
    p = Progress("extract", 12, 45, "tracks", "212× real time", 38.0)
    line = progress.format_line(p)
    assert line == "[progress] extract 12/45 tracks (27%) · 212× real time · ETA 0:38"
    assert progress.parse_line(line) == p
    assert progress.parse_line("fold 2/5: 9 test tracks") is None
    unknown_total = Progress("training", 3, None, "epochs")
    assert progress.parse_line(progress.format_line(unknown_total)) == unknown_total


def test_nested_counters_give_the_fraction_of_a_phase():
    assert progress.nested_fraction("candidate 3/12 · fold 2/5") == pytest.approx((2 + 1 / 5) / 12)
    assert progress.nested_fraction("fold 2/5: 9 test tracks, best epoch 11", inner=0.5) == pytest.approx(1.5 / 5)
    assert progress.nested_fraction("computing mfcc for 45 tracks") is None
    assert progress.parse_message("cnn_mfcc · grouped fold 3/3") == [("fold", 3, 3)]


def test_log_lines_are_throttled_per_phase_but_texts_always_pass():
    clock, out = FakeClock(), []
    lines = progress.LogLines(out.append, interval_s=10, clock=clock)
    for done in range(1, 6):
        clock.t += 1
        lines(Progress("extract", done, 5, "tracks"))
    lines("fold 1/5: done")
    lines("fold 2/5: done")
    assert out == [
        progress.format_line(Progress("extract", 1, 5, "tracks")),
        progress.format_line(Progress("extract", 5, 5, "tracks")),
        "fold 1/5: done",
        "fold 2/5: done",
    ]


def test_dagster_reporter_reaches_listeners_in_this_process():
    logged, heard = [], []
    report = progress.dagster_reporter(logged.append)
    with progress.listen(heard.append):
        report(Progress("extract", 1, 2, "tracks"))
        report("fold 1/2")
    report(Progress("extract", 2, 2, "tracks"))  # after the listener left
    assert [type(x).__name__ for x in heard] == ["Progress", "str"] and len(logged) == 3


def _events_for_a_build():
    yield RunEvent("plan", "extract", steps=3)
    yield RunEvent("run_start", "extract", steps=1)
    for i in (1, 2, 3):
        yield RunEvent(
            "progress", "extract", progress=Progress("extract", i, 3, "tracks", f"{100 * i}× real time", 3.0 - i)
        )
    yield RunEvent("run_end", "extract")
    yield RunEvent("run_start", "models", steps=2)
    yield RunEvent("step_start", "models", "difficulty_cnn")
    yield RunEvent("log", "models", "difficulty_cnn", text="fold 2/5: 9 test tracks")
    yield RunEvent("progress", "models", None, progress=Progress("training", 7, 40, "epochs", "loss 0.912"))
    yield RunEvent("step_end", "models", "difficulty_cnn", ok=True)
    yield RunEvent("step_start", "models", "genre_classifier")
    yield RunEvent("step_end", "models", "genre_classifier", ok=False)
    yield RunEvent("run_end", "models", ok=False)


def test_display_without_a_terminal_prints_each_phase():
    out = io.StringIO()
    d = BuildDisplay(out, tty=False, workers=2)
    for ev in _events_for_a_build():
        d.event(ev)
    d.close()
    text = out.getvalue()
    assert "analysing 3 tracks in 2 worker processes" in text
    assert "extract 1/3 tracks · 100× real time\n" in text  # no ETA from the first track alone
    assert "analysed 3 tracks in" in text and "300× real time" in text
    assert "training 2 library models" in text and "  training difficulty_cnn …" in text
    assert "  difficulty_cnn: fold 2/5: 9 test tracks\n" in text and "  difficulty_cnn: epoch 7/40 loss 0.912\n" in text
    assert (
        "difficulty_cnn done" in text
        and "genre_classifier FAILED" in text
        and "models: 2/2 trained (with failures)" in text
    )


def test_display_bar_moves_within_a_model_by_fold_and_epoch():
    out = io.StringIO()
    d = BuildDisplay(out, tty=True)
    events = list(_events_for_a_build())
    for ev in events[:10]:  # up to the epoch report of fold 2/5
        d.event(ev)
    assert d.bar_kind == "models"
    assert d.bar.n == pytest.approx((1 + 7 / 40) / 5)  # fold 2 of 5 begun, 7 of 40 epochs into it
    assert d._models_text() == "0/2 models · difficulty_cnn: fold 2/5 · epoch 7/40"
    d.close()
    text = out.getvalue()
    assert "analysed 3 tracks in 0:00, 300× real time\n" in text and "training 2 library models …\n" in text
    assert text.endswith("0/2 models · difficulty_cnn: fold 2/5 · epoch 7/40 [00:00]\n")  # the bar left where it was


def test_stderr_of_children_goes_to_the_log_and_the_terminal_stream_stays(tmp_path):
    log = tmp_path / "logs" / "build.log"
    script = "import os; os.write(2, b'E0000 native chatter\\n')"
    with quiet.stderr_to_file(log) as terminal:
        subprocess.run([sys.executable, "-c", script], check=True)  # inherits fd 2
        os.write(2, b"from this process\n")
        terminal.write("")  # the user's stream is open and writable
    assert log.read_text() == "E0000 native chatter\nfrom this process\n"


def test_captured_stderr_hands_back_what_c_code_printed():
    with quiet.captured_stderr() as box:
        os.write(2, b"Note: Illegal Audio-MPEG-Header\n")
    assert box == ["Note: Illegal Audio-MPEG-Header\n"]


@pytest.mark.slow
def test_tensorflow_training_prints_nothing_when_quiet(tmp_path):
    """TensorFlow's import banner, absl C++ lines and retracing warnings, with the settings
    `music-pipeline` applies before TensorFlow loads; with --verbose they are there."""
    code = textwrap.dedent(
        """
        import sys
        from music_pipeline import quiet
        quiet.quiet_environment(); quiet.quiet_python_logs(); quiet.load_tensorflow()
        import numpy as np, keras
        x = np.random.rand(64, 4).astype("float32"); y = np.random.randint(0, 3, 64)
        m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
        m.compile("adam", "sparse_categorical_crossentropy")
        m.fit(x, y, epochs=2, verbose=0, validation_data=(x, y), class_weight={0: 1.0, 1: 2.0, 2: 1.0})
        for _ in range(7):  # new models: tf.function retracing warnings
            keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)]).predict(x, verbose=0)
        print("trained", file=sys.stderr)
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TF_", settings.ENV_VERBOSE))}
    quiet_run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300, check=False
    )
    assert quiet_run.returncode == 0, quiet_run.stderr[-2000:]
    assert quiet_run.stderr == "trained\n"
    loud = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**env, settings.ENV_VERBOSE: "1", "TF_CPP_MIN_LOG_LEVEL": "0"},
        timeout=300,
        check=False,
    )
    assert "retracing" in loud.stderr  # the test would see the noise if it were there
    assert "oneDNN" in loud.stderr  # oneDNN stays on (it is the fast path); only its banner is kept away
