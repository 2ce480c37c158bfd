"""Segment CNN: grouped folds by track before segmenting, tiny training, save/reload, report."""

import json

import numpy as np
import pandas as pd
import pytest

from music_pipeline.artifacts import read_parquet
from music_pipeline.difficulty import cnn
from music_pipeline.features.extract import FeatureStore
from music_pipeline.layout import DataLayout


def _levels_from(descriptors: pd.DataFrame) -> pd.DataFrame:
    """Scores for the CNN tests without transcribing: tertiles of onset density stand in for the PDI."""
    ranks = descriptors["onset_density"].rank(method="first").to_numpy()
    pdi_like = (ranks - 0.5) / len(ranks)
    return descriptors[["key", "relpath", "label", "group", "content_hash"]].assign(
        pdi=pdi_like, level_index=np.minimum((pdi_like * 3).astype(int), 2)
    )


@pytest.fixture(scope="module")
def dataset(styled_library):
    data_dir = styled_library[1]
    scores = _levels_from(read_parquet(DataLayout(data_dir).tables_dir / "difficulty_descriptors.parquet"))
    store = FeatureStore(data_dir)
    return cnn.load_segment_dataset(scores, lambda h: store.load(h).segments)


def _synthetic(n_tracks: int, groups: list | None = None, segs: int = 3, seed: int = 0) -> cnn.SegmentDataset:
    rng = np.random.default_rng(seed)
    tracks = pd.DataFrame(
        {
            "key": [f"t{i:02d}" for i in range(n_tracks)],
            "relpath": [f"t{i:02d}.wav" for i in range(n_tracks)],
            "label": None,
            "group": groups if groups is not None else [None] * n_tracks,
            "content_hash": [f"h{i}" for i in range(n_tracks)],
            "pdi": rng.random(n_tracks),
            "level_index": np.arange(n_tracks) % 3,
        }
    )
    X = rng.standard_normal((n_tracks * segs, 128, 128)).astype(np.float16)
    return cnn.SegmentDataset(X, np.repeat(np.arange(n_tracks), segs), np.tile(np.arange(segs), n_tracks), tracks)


def test_segments_inherit_their_track_level(dataset):
    assert dataset.X.shape == (24 * 3, 128, 128) and dataset.X.dtype == np.float16
    assert not dataset.missing
    for t in range(len(dataset.tracks)):
        assert (dataset.y[dataset.track == t] == dataset.tracks["level_index"].iloc[t]).all()
    assert list(dataset.position[:3]) == [0, 1, 2]


def test_folds_never_split_a_track(dataset):
    folds = cnn.fold_segment_indices(dataset, n_splits=4, seed=0)
    assert len(folds) == 4
    seen = []
    for train, test in folds:
        assert not set(train) & set(test)
        assert not set(dataset.track[train]) & set(dataset.track[test])
        # every segment of a test track is in the test fold
        for t in set(dataset.track[test]):
            assert set(np.flatnonzero(dataset.track == t)) <= set(test)
        assert len(train) + len(test) == len(dataset.y)
        seen.extend(test)
    assert sorted(seen) == list(range(len(dataset.y)))  # each segment tested exactly once


def test_folds_keep_library_groups_together():
    groups = [f"album{i // 4}" for i in range(24)]  # 6 groups of 4 tracks
    data = _synthetic(24, groups)
    for train, test in cnn.fold_segment_indices(data, n_splits=3, seed=1):
        g_train = {groups[t] for t in data.track[train]}
        g_test = {groups[t] for t in data.track[test]}
        assert not g_train & g_test
    # unknown groups fall back to the track itself
    assert len(set(cnn.track_groups(_synthetic(5).tracks))) == 5


def test_metrics_and_baselines_on_known_predictions():
    data = _synthetic(9, segs=2)
    y = data.track_level
    perfect = np.eye(3)[y]
    m = cnn.evaluate_predictions(perfect, np.eye(3)[data.y], data)
    assert m["track_accuracy"] == m["segment_accuracy"] == m["macro_f1"] == m["within_one_accuracy"] == 1.0
    assert np.trace(m["confusion_matrix"]) == 9
    folds = cnn.grouped_track_folds(y, cnn.track_groups(data.tracks), 3, seed=0)
    b = cnn.baselines(data, folds)
    assert b["majority"]["spearman_rho"] is None  # a constant prediction has no rank correlation
    assert b["uniform_random"]["track_accuracy"] == pytest.approx(1 / 3, abs=0.03)
    assert b["uniform_random"]["within_one_accuracy"] == pytest.approx(7 / 9, abs=0.03)
    # Easy (0) predicted for Hard (2) is the only miss within one level
    opposite = np.eye(3)[2 - y]
    assert cnn.evaluate_predictions(opposite, np.eye(3)[2 - data.y], data)["within_one_accuracy"] == pytest.approx(
        3 / 9
    )


def test_one_epoch_trains_saves_reloads_and_predicts_the_same(dataset, tmp_path):
    cfg = cnn.CnnConfig(epochs=1, batch_size=16, seed=0)
    train = np.arange(0, 24, 2)
    model, history, best = cnn.train_model(dataset, train, cfg, early_stopping=False)
    assert len(history["loss"]) == 1 and best == 1
    test_seg = np.flatnonzero(np.isin(dataset.track, np.arange(1, 24, 2)))[:9]
    before = cnn.predict_segments(model, dataset.X[test_seg])
    assert before.shape == (9, 3)
    np.testing.assert_allclose(before.sum(axis=1), 1.0, rtol=1e-5)
    path = cnn.save_keras(model, tmp_path / "m" / cnn.MODEL_FILE)
    assert path.is_file() and not [p for p in path.parent.iterdir() if p.name.startswith(".")]
    after = cnn.predict_segments(cnn.load_keras(path), dataset.X[test_seg])
    np.testing.assert_array_equal(before, after)
    # per-segment standardisation is inside the model: a gain change does not change the output
    louder = cnn.predict_segments(model, (dataset.X[test_seg].astype(np.float32) + 12.0).astype(np.float16))
    np.testing.assert_allclose(louder, before, atol=2e-3)


def test_training_is_deterministic_with_a_fixed_seed(dataset):
    cfg = cnn.CnnConfig(epochs=1, batch_size=8, seed=3)
    train = np.arange(6)
    probs = [
        cnn.predict_segments(cnn.train_model(dataset, train, cfg, early_stopping=False)[0], dataset.X[:6])
        for _ in range(2)
    ]
    np.testing.assert_array_equal(probs[0], probs[1])


def test_efficientnet_builds_from_scratch_on_one_channel():
    model = cnn.build_efficientnet(3)
    assert model.input_shape == (None, 128, 128, 1) and model.output_shape == (None, 3)
    assert model.count_params() > 3_000_000


def test_budget_subsamples_large_libraries_by_level():
    scores = pd.DataFrame(
        {
            "key": [f"t{i}" for i in range(1000)],
            "level_index": np.arange(1000) % 3,
            "content_hash": [f"h{i}" for i in range(1000)],
        }
    )
    sub = cnn.subsample_tracks(scores, 90, seed=0)
    assert len(sub) == 90 and sub["level_index"].value_counts().to_dict() == {0: 30, 1: 30, 2: 30}
    assert sub.index.is_monotonic_increasing
    pd.testing.assert_frame_equal(sub, cnn.subsample_tracks(scores, 90, seed=0))
    assert cnn.subsample_tracks(scores, 5000) is scores
    # only the subsample's segments are loaded: memory is bounded by max_tracks, not the library
    loaded = []
    data = cnn.load_segment_dataset(
        scores.assign(relpath="x", label=None, group=None, pdi=0.5),
        lambda h: loaded.append(h) or np.zeros((3, 128, 128)),
        max_tracks=12,
    )
    assert len(loaded) == 12 and len(data.tracks) == 12 and data.X.shape == (36, 128, 128)


def test_training_reports_progress_per_fold_and_epoch(dataset):
    lines = []
    cv = cnn.cross_validate(dataset, cnn.CnnConfig(epochs=2, folds=2, batch_size=16, patience=5), lines.append)
    assert "fold 1/2 · epoch 1/2" in lines and "fold 2/2 · epoch 2/2" in lines
    assert len(cv.per_fold) == 2


def test_default_budget_is_small():
    cfg = cnn.CnnConfig()
    assert (cfg.folds, cfg.epochs, cfg.max_tracks) == (3, 8, 2000)
    assert cnn.build_compact_cnn().count_params() < 20_000


def test_config_rejects_unknown_architecture():
    with pytest.raises(ValueError, match="architecture"):
        cnn.CnnConfig(architecture="resnet")


def test_difficulty_cnn_asset_reports_metrics_beside_baselines(styled_library):
    """Through Dagster on the styled library: 2 grouped folds × 1 epoch, then the final fit."""
    import dagster as dg

    from music_pipeline.audio.scan import scan_library
    from music_pipeline.defs.assets import difficulty as assets
    from music_pipeline.defs.resources import MusicPipelineResource
    from music_pipeline.notes.store import NotesJob, transcribe_many

    library, data = styled_library
    # what track_notes stores for every track (the difficulty asset reads it)
    scan = scan_library(library, DataLayout(data).hash_cache_path)
    transcribe_many([NotesJob(t.key, t.path, t.relpath, t.content_hash, str(data)) for t in scan.tracks], workers=1)
    resource = MusicPipelineResource(data_dir=str(data), library_dir=str(library), workers=1)
    result = dg.materialize(
        [
            assets.difficulty,
            assets.difficulty_cnn,
            assets.difficulty_cnn_report_complete,
            assets.difficulty_cnn_beats_baselines,
        ],
        resources={"pipeline": resource},
        instance=dg.DagsterInstance.ephemeral(),
        run_config={"ops": {"difficulty_cnn": {"config": {"epochs": 1, "folds": 2, "batch_size": 16}}}},
    )
    assert result.success
    layout = DataLayout(data)
    report = json.loads((layout.difficulty_dir / cnn.REPORT_FILE).read_text())
    assert report["n_tracks"] == 24 and report["n_segments"] == 72 and report["folds"] == 2
    for name in cnn.METRIC_ROWS:
        assert (
            name in report["metrics"]
            and name in report["baselines"]["majority"]
            and name in report["baselines"]["uniform_random"]
        )
    confusion = np.asarray(report["metrics"]["confusion_matrix"])
    assert confusion.sum() == 24
    # the reported accuracy is the one its own out-of-fold confusion matrix gives (not just "in [0, 1]")
    assert report["metrics"]["track_accuracy"] == pytest.approx(np.trace(confusion) / confusion.sum())
    assert (layout.difficulty_dir / cnn.MODEL_FILE).is_file()
    assert (layout.difficulty_plots_dir / "cnn_training_curves.png").is_file()
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert checks["difficulty_cnn_report_complete"].passed
    beats = checks["difficulty_cnn_beats_baselines"]
    assert beats.passed == (
        report["metrics"]["track_accuracy"]
        > max(report["baselines"][b]["track_accuracy"] for b in ("majority", "uniform_random"))
    )
    md = result.asset_materializations_for_node("difficulty_cnn")[0].metadata
    assert "majority" in md["metrics_vs_baselines"].value and "data:image/png" in md["training_curves"].value


@pytest.mark.parametrize(
    ("accuracy", "majority", "uniform", "passes"),
    [(0.60, 0.40, 0.33, True), (0.40, 0.45, 0.33, False), (0.45, 0.45, 0.33, False), (0.30, 0.20, 0.33, False)],
)
def test_the_beats_baselines_check_judges_the_reported_figures(tmp_path, accuracy, majority, uniform, passes):
    """The check passes only when the model's track accuracy is above both baselines (a tie fails)."""
    import dagster as dg

    from music_pipeline.artifacts import write_json
    from music_pipeline.defs.assets import difficulty as assets
    from music_pipeline.defs.resources import MusicPipelineResource
    from music_pipeline.difficulty.cnn import REPORT_FILE
    from music_pipeline.layout import DataLayout

    layout = DataLayout(tmp_path / "data")
    write_json(
        layout.difficulty_dir / REPORT_FILE,
        {
            "metrics": {"track_accuracy": accuracy},
            "baselines": {"majority": {"track_accuracy": majority}, "uniform_random": {"track_accuracy": uniform}},
        },
    )
    pipeline = MusicPipelineResource(data_dir=str(tmp_path / "data"), library_dir=str(tmp_path), workers=1)
    result = assets.difficulty_cnn_beats_baselines(pipeline)
    assert result.passed is passes and result.severity == dg.AssetCheckSeverity.WARN
    assert result.metadata["margin"].value == pytest.approx(accuracy - max(majority, uniform))
