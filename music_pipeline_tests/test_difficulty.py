"""PDI: normalisation fitted on the library, subscores, levels, saved model, CLI and the asset."""

import hashlib
import json

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from music_pipeline.features.difficulty import DESCRIPTOR_FAMILY, DESCRIPTOR_NAMES, INTENSITY, STRUCTURAL
from music_pipeline.features.extract import features_from_signal
from music_pipeline.models import pdi
from music_pipeline.storage import DataLayout, read_parquet
from music_pipeline.synth import SR, clicks, noise, tone


@pytest.fixture(scope="module")
def descriptors(styled_library):
    return read_parquet(DataLayout(styled_library[1]).tables_dir / "difficulty_descriptors.parquet")


@pytest.fixture(scope="module")
def fitted(descriptors):
    return pdi.score_library(descriptors)


def test_dense_noisy_clicks_are_more_intense_than_a_slow_tone(fitted):
    _, model = fitted
    busy = features_from_signal(clicks(200, 12) + noise(12, amp=0.2))
    calm = features_from_signal(tone(220, 12, amp=0.3))
    b, c = model.score(busy.descriptors), model.score(calm.descriptors)
    assert b.intensity > c.intensity + 0.2
    assert b.pdi > c.pdi
    assert 0.0 <= c.pdi <= b.pdi <= 1.0


def test_library_styles_rank_as_built(fitted):
    scores, _ = fitted
    by_style = scores.groupby("label")["intensity"].mean()
    # noise_rock: 170 BPM, loud noise, kick; drone: 60 BPM sustained notes
    assert by_style["noise_rock"] > by_style["drone"]
    assert by_style["noise_rock"] == by_style.max()


def test_formulas(fitted, descriptors):
    scores, model = fitted
    X = descriptors[DESCRIPTOR_NAMES].to_numpy()
    norm = (X - X.min(axis=0)) / (X.max(axis=0) - X.min(axis=0))
    np.testing.assert_allclose(scores[pdi.NORM_COLUMNS].to_numpy(), norm, atol=1e-12)
    s_cols = [pdi.norm_column(n) for n in DESCRIPTOR_NAMES if DESCRIPTOR_FAMILY[n] == STRUCTURAL]
    i_cols = [pdi.norm_column(n) for n in DESCRIPTOR_NAMES if DESCRIPTOR_FAMILY[n] == INTENSITY]
    np.testing.assert_allclose(scores["structural"], scores[s_cols].mean(axis=1), atol=1e-12)
    np.testing.assert_allclose(scores["intensity"], scores[i_cols].mean(axis=1), atol=1e-12)
    np.testing.assert_allclose(scores["pdi"], 0.5 * scores["structural"] + 0.5 * scores["intensity"], atol=1e-12)
    # tertiles: 24 tracks → 8 per level; thresholds are the library quantiles
    assert pdi.level_counts(scores) == {"Easy": 8, "Medium": 8, "Hard": 8}
    np.testing.assert_allclose(model.thresholds, np.quantile(scores["pdi"], [1 / 3, 2 / 3]))
    order = scores.sort_values("pdi")["level_index"].to_numpy()
    assert (np.diff(order) >= 0).all()


def test_weights_and_fixed_thresholds(descriptors):
    scores, model = pdi.score_library(descriptors, weights={STRUCTURAL: 1.0, INTENSITY: 0.0}, thresholds=[0.2, 0.6])
    np.testing.assert_allclose(scores["pdi"], scores["structural"], atol=1e-12)
    assert model.thresholds == (0.2, 0.6)
    expected = np.where(scores["pdi"] < 0.2, "Easy", np.where(scores["pdi"] < 0.6, "Medium", "Hard"))
    assert (scores["level"].to_numpy() == expected).all()
    # a PDI exactly on a threshold belongs to the upper level
    assert list(model.level_index(np.array([0.2, 0.6, 0.1999]))) == [1, 2, 0]
    with pytest.raises(ValueError):
        pdi.score_library(descriptors, thresholds=[0.6, 0.2])
    with pytest.raises(ValueError):
        pdi.score_library(descriptors, weights={STRUCTURAL: -1.0, INTENSITY: 1.0})


def test_scaler_clips_new_files_and_handles_constant_descriptors():
    X = np.array([[0.0, 5.0], [10.0, 5.0], [5.0, 5.0]])
    sc = pdi.DifficultyScaler.fit(X, ["a", "b"])
    np.testing.assert_array_equal(sc.transform(X), [[0.0, 0.5], [1.0, 0.5], [0.5, 0.5]])
    np.testing.assert_array_equal(sc.transform([[20.0, 7.0]]), [[1.0, 0.5]])
    np.testing.assert_array_equal(sc.transform([[20.0, 7.0]], clip=False), [[2.0, 0.5]])
    assert pdi.DifficultyScaler.from_dict(json.loads(json.dumps(sc.to_dict()))).transform(X).tolist() == sc.transform(X).tolist()


def test_score_of_an_extreme_file_saturates_and_reports_out_of_range(fitted, descriptors):
    _, model = fitted
    row = descriptors.iloc[0][DESCRIPTOR_NAMES].to_dict()
    row["onset_density"] = 1e3
    s = model.score(row, top=13)
    assert "onset_density" in s.out_of_range
    assert s.normalised["onset_density"] == 1.0
    assert 0.0 <= s.pdi <= 1.0
    # pushing: sorted by distance from the library median, equal to norm − median
    dist = [abs(p["vs_median"]) for p in s.pushing]
    assert dist == sorted(dist, reverse=True)
    medians = dict(zip(model.names, model.medians))
    for p in s.pushing:
        assert p["vs_median"] == pytest.approx(p["normalised"] - medians[p["descriptor"]])
    pushed = {p["descriptor"]: p for p in s.pushing}
    assert pushed["onset_density"]["normalised"] == 1.0 and pushed["onset_density"]["value"] == 1e3


def test_saved_model_reproduces_scores_exactly(fitted, descriptors, tmp_path):
    scores, model = fitted
    path = model.save(tmp_path)
    again = pdi.DifficultyModel.load(tmp_path)
    pd.testing.assert_frame_equal(again.score_frame(descriptors), scores, check_exact=True)
    # single-file scoring of a library track gives that track's stored score
    one = again.score(descriptors.iloc[3][DESCRIPTOR_NAMES].to_dict())
    assert one.pdi == scores["pdi"].iloc[3] and one.level == scores["level"].iloc[3]
    # re-saving the reloaded model writes the same bytes
    first = path.read_bytes()
    again.save(tmp_path)
    assert path.read_bytes() == first


def test_pdi_is_deterministic_and_independent_of_row_order(descriptors):
    a, ma = pdi.score_library(descriptors)
    b, mb = pdi.score_library(descriptors)
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    assert ma.to_dict() == mb.to_dict()
    shuffled = descriptors.sample(frac=1.0, random_state=3)
    c, _ = pdi.score_library(shuffled)
    pd.testing.assert_frame_equal(c.set_index("key").loc[a["key"]].reset_index(), a, check_exact=True)


def test_load_without_a_built_library_is_a_clear_error(tmp_path):
    with pytest.raises(pdi.LibraryNotScored, match="build the library"):
        pdi.DifficultyModel.load(tmp_path)


def test_extremes_lists_hardest_and_easiest(fitted):
    scores, _ = fitted
    ex = pdi.extremes(scores, 3)
    assert list(ex["end"]) == ["hardest"] * 3 + ["easiest"] * 3
    # each end starts with its most extreme track
    assert ex["pdi"].iloc[0] == scores["pdi"].max() and ex["pdi"].iloc[3] == scores["pdi"].min()


# --- Dagster asset and CLI ----------------------------------------------------------------------


def _materialize_difficulty(library, data):
    import dagster as dg

    from music_pipeline.defs.assets import difficulty as assets
    from music_pipeline.defs.resources import MusicPipelineResource

    return dg.materialize(
        [assets.difficulty, assets.difficulty_levels_nonempty, assets.difficulty_model_reproduces_scores],
        resources={"pipeline": MusicPipelineResource(data_dir=str(data), library_dir=str(library), workers=1)},
        instance=dg.DagsterInstance.ephemeral(),
    )


@pytest.fixture(scope="module")
def built(styled_library):
    """Materialize the difficulty asset (and its checks) through Dagster on the styled library."""
    library, data = styled_library
    return _materialize_difficulty(library, data), DataLayout(data)


def test_difficulty_asset_writes_table_model_plots_and_passes_checks(built):
    result, layout = built
    assert result.success
    scores = read_parquet(pdi.scores_table_path(layout))
    for col in ["key", "relpath", "label", *pdi.NORM_COLUMNS, "structural", "intensity", "pdi", "level"]:
        assert col in scores.columns
    assert len(scores) == 24
    assert (pdi.model_dir(layout) / pdi.MODEL_FILE).is_file()
    for name in ("pdi_histogram", "subscores", "descriptor_pca", "gallery"):
        assert (pdi.plots_dir(layout) / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = result.asset_materializations_for_node("difficulty")[0].metadata
    assert md["levels"].value == {"Easy": 8, "Medium": 8, "Hard": 8}
    assert "data:image/png;base64," in md["gallery"].value
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks == {"difficulty_levels_nonempty": True, "difficulty_model_reproduces_scores": True}


def test_rebuilding_an_unchanged_library_moves_nobody(built, styled_library):
    _, layout = built
    before = read_parquet(pdi.scores_table_path(layout))
    again = _materialize_difficulty(*styled_library)
    assert again.success
    pd.testing.assert_frame_equal(read_parquet(pdi.scores_table_path(layout)), before, check_exact=True)
    moved = again.asset_materializations_for_node("difficulty")[0].metadata["since_last_build"].value
    assert moved == {"tracks_compared": 24, "tracks_changing_level": 0, "max_abs_pdi_change": 0.0}


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_cli_scores_outside_files_without_touching_the_library(built, tmp_path, capsys):
    from music_pipeline.cli import main

    _, layout = built
    busy, calm = tmp_path / "busy.wav", tmp_path / "calm.wav"
    sf.write(busy, clicks(200, 8) + noise(8, amp=0.2), SR)
    sf.write(calm, tone(220, 8, amp=0.3), SR)
    table, model_file = pdi.scores_table_path(layout), pdi.model_dir(layout) / pdi.MODEL_FILE
    before = (_digest(table), _digest(model_file))

    assert main(["difficulty", str(busy), str(calm), "--json", "--data", str(layout.root)]) == 0
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [o["file"] for o in out] == [str(busy), str(calm)]
    for o in out:
        assert o["level"] in pdi.LEVELS and 0.0 <= o["pdi"] <= 1.0
        assert len(o["pushing"]) == 3 and {"descriptor", "value", "vs_median"} <= set(o["pushing"][0])
    assert out[0]["intensity"] > out[1]["intensity"]
    assert (_digest(table), _digest(model_file)) == before

    assert main(["difficulty", str(calm), "--data", str(layout.root)]) == 0
    text = capsys.readouterr().out
    assert "PDI" in text and "structural complexity" in text and "pushed most by" in text


def test_cli_without_a_built_library_and_with_a_bad_file(built, tmp_path, capsys):
    from music_pipeline.cli import main

    f = tmp_path / "calm.wav"
    sf.write(f, tone(220, 4), SR)
    assert main(["difficulty", str(f), "--data", str(tmp_path / "empty")]) == 2
    assert "build the library" in capsys.readouterr().err
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF....not audio")
    assert main(["difficulty", str(bad), str(f), "--json", "--data", str(built[1].root)]) == 1
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert "error" in lines[0] and lines[1]["level"] in pdi.LEVELS
