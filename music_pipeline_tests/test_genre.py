"""Genre: grouped CV, the saved model, SHAP, the comparators' table and `classify` (synthetic audio)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from music_pipeline.models.genre import (
    Candidate, GenreModel, LabelledData, ModelFileError, SearchConfig, XgbSettings, current_version, evaluate, feature_view,
    fold_assignment, labelled_data, make_folds, plan_from_assignment, publish_version,
)
from music_pipeline.storage import DataLayout, read_parquet, write_parquet

FAST_XGB = XgbSettings(n_estimators=30, learning_rate=0.3)
TINY_SEARCH = SearchConfig(families=("xgb", "logreg"), feature_sets=("full",), pca_grid=(10,), depth_grid=(2,), logreg_C=(0.2,), xgb=FAST_XGB)


@pytest.fixture(scope="module")
def styled_data(styled_library):
    _, data_dir = styled_library
    return labelled_data(read_parquet(DataLayout(data_dir).embeddings_path))


@pytest.fixture(scope="module")
def xgb_model(styled_data):
    return GenreModel.fit(Candidate("xgb", "full", pca=10), styled_data.X, styled_data.labels, xgb_settings=FAST_XGB)


def test_synthetic_styles_are_separated_on_grouped_cv(styled_data):
    assert styled_data.classes == ["arpeggio", "drone", "noise_rock", "pulse"] and styled_data.n == 24
    ev = evaluate(styled_data, TINY_SEARCH)
    kind, est = ev.estimate()
    assert kind == "nested grouped CV" and len(ev.nested_choices) == ev.plan.n_splits == 5
    assert est["balanced_accuracy"] >= 0.9
    assert est["balanced_accuracy"] > ev.baseline_grouped["balanced_accuracy"] + 0.5
    for r in ev.results:  # every candidate, scored on the same folds
        assert r.grouped["balanced_accuracy"] >= 0.75, r.candidate.name
        assert np.array(r.grouped["confusion"]).sum() == 24


def test_grouped_folds_never_put_a_group_on_both_sides():
    # 3 labels; every group (album) holds 3 tracks of one label; label 'c' has the fewest groups (3)
    groups = np.array([f"g{i}" for i in range(10) for _ in range(3)])
    y = np.array([0] * 12 + [1] * 9 + [2] * 9)  # g0-g3 → 0, g4-g6 → 1, g7-g9 → 2
    plan = make_folds(y, groups, classes=["a", "b", "c"])
    assert plan.possible and plan.n_splits == 3
    seen = np.concatenate([te for _, te in plan.grouped])
    assert sorted(seen.tolist()) == list(range(30))  # each track tested exactly once
    for tr, te in plan.grouped:
        assert not set(groups[tr]) & set(groups[te])
        assert set(y[tr]) == {0, 1, 2}
    # the shuffled folds do let groups straddle the split: that is the leak the grouped score avoids
    assert any(set(groups[tr]) & set(groups[te]) for tr, te in plan.shuffled)
    # the folds survive the JSON round trip that genre_comparison relies on
    keys = np.array([f"k{i}" for i in range(30)])
    labels = np.array(["a", "b", "c"])[y]
    d = LabelledData(np.zeros((30, 1)), labels, ["a", "b", "c"], y, groups, keys, keys, 0, 30)
    again = plan_from_assignment(json.loads(json.dumps(fold_assignment(d, plan))), keys)
    for (tr1, te1), (tr2, te2) in zip(plan.grouped, again.grouped):
        assert np.array_equal(np.sort(te1), te2) and np.array_equal(np.sort(tr1), tr2)
    assert plan_from_assignment(fold_assignment(d, plan), keys[::-1]) is None  # other tracks: not reused


def test_too_few_groups_means_no_cv_and_says_why(styled_data):
    groups = np.array(["album"] * 6 + [f"t{i}" for i in range(18)])  # all 'arpeggio' tracks share one group
    plan = make_folds(styled_data.y, groups, classes=styled_data.classes)
    assert not plan.possible
    assert "arpeggio has fewer than 2 groups" in plan.note
    one_label = make_folds(np.zeros(5, int), np.arange(5).astype(str))
    assert not one_label.possible and "at least 2 labels" in one_label.note


def test_level_invariant_view_ignores_gain():
    from music_pipeline.features.extract import features_from_signal
    from music_pipeline.synth import styled_track

    y = styled_track("pulse", 6.0, seed=3)
    X = np.vstack([features_from_signal(y).embedding, features_from_signal(0.25 * y).embedding])
    full, _ = feature_view(X, "full")
    inv, names = feature_view(X, "level_invariant")
    assert np.abs(full[0] - full[1]).max() > 10  # 12 dB quieter: absolute mel levels and MFCC 1 move
    np.testing.assert_allclose(inv[0], inv[1], rtol=1e-4, atol=1e-4)  # float32 analysis noise only
    assert "mfcc_mean_01" not in names and "rms_cv" in names


@pytest.mark.parametrize("candidate", [Candidate("xgb", "level_invariant", pca=10), Candidate("logreg", "full", C=0.2), Candidate("knn", "full", k=5)], ids=lambda c: c.family)
def test_saved_model_reloads_with_identical_probabilities(styled_data, tmp_path, candidate):
    model = GenreModel.fit(candidate, styled_data.X, styled_data.labels, xgb_settings=FAST_XGB)
    model.save(tmp_path / "m")
    assert not list((tmp_path / "m").glob("*.pkl")) and not list((tmp_path / "m").glob("*.joblib"))
    again = GenreModel.load(tmp_path / "m")
    assert again.classes == model.classes and again.candidate == candidate
    np.testing.assert_array_equal(again.predict_proba(styled_data.X), model.predict_proba(styled_data.X))
    # an edited or half-written file is refused, not silently used
    victim = (tmp_path / "m" / "preprocess.npz")
    raw = bytearray(victim.read_bytes())
    raw[-1] ^= 0xFF
    victim.write_bytes(bytes(raw))
    with pytest.raises(ModelFileError, match="does not match"):
        GenreModel.load(tmp_path / "m")


def test_versions_switch_atomically_and_old_ones_are_pruned(tmp_path):
    for i in range(4):
        publish_version(tmp_path, lambda d, i=i: (d.mkdir(), (d / "n.txt").write_text(str(i))), keep=2)
    cur = current_version(tmp_path)
    assert (cur / "n.txt").read_text() == "3"
    assert len([p for p in tmp_path.iterdir() if p.is_dir()]) == 2
    with pytest.raises(RuntimeError):
        publish_version(tmp_path, lambda d: (_ for _ in ()).throw(RuntimeError("boom")))
    assert current_version(tmp_path) == cur  # a failed write leaves the pointer alone


def test_shap_values_plus_base_reproduce_the_margin(styled_data, xgb_model):
    from scipy.special import softmax

    from music_pipeline.models import explain as ex

    res = ex.tree_shap(xgb_model, styled_data.X)
    K, C = len(styled_data.classes), xgb_model.pipeline.named_steps["pca"].n_components_
    assert res.values.shape == (24, C, K) and res.base.shape == (K,)
    margin = ex.margin(xgb_model, styled_data.X)
    np.testing.assert_allclose(res.values.sum(axis=1) + res.base, margin, atol=1e-4)
    np.testing.assert_allclose(softmax(margin, axis=1), xgb_model.predict_proba(styled_data.X), atol=1e-5)
    proba = xgb_model.predict_proba(styled_data.X)
    e = ex.explain_track(xgb_model, res, 0, proba[0])
    assert e["text"].startswith(f"Predicted {e['label']}") and ("high (" in e["text"] or "low (" in e["text"])
    assert all(c["meaning"] for c in e["components"])


def test_plain_language_names_and_boundary_songs():
    from music_pipeline.models.explain import boundary_songs, describe_component, feature_concept

    assert feature_concept("spectral_centroid_mean")[0] == "brightness"
    assert feature_concept("mfcc_mean_03")[0] == "brightness/spectral tilt"
    assert feature_concept("mel_mean_002")[0] == "sub-bass energy"
    names = ["spectral_centroid_mean", "mfcc_mean_02", "mfcc_mean_03", "mfcc_mean_04", "tempo_bpm"]
    assert describe_component(np.array([0.9, 0.5, 0.5, 0.5, 0.01]), names, top=4, concepts=2) == "brightness/spectral tilt (MFCC 2–4); brightness (spectral centroid)"
    proba = np.array([[0.50, 0.45, 0.05], [0.9, 0.05, 0.05], [0.2, 0.35, 0.45]])
    b = boundary_songs(proba, ["a", "b", "c"], 0.15)
    assert b["row"].tolist() == [0, 2] and b["second"].tolist() == ["b", "b"]


def test_mel_chroma_finds_the_pitch_class_of_a_tone():
    from music_pipeline.features.spectra import compute_spectra
    from music_pipeline.models.comparators import chroma_patches
    from music_pipeline.synth import tone

    for freq, pc in ((440.0, 9), (1046.5, 0), (740.0, 6)):  # A4, C6, F#5
        mel = compute_spectra(tone(freq, 3.0)).log_mel[:, :128]
        chroma = chroma_patches(mel[None, None])[0, 0]
        assert chroma.shape == (12, 128) and np.bincount(chroma.argmax(axis=0)).argmax() == pc, freq


def test_cnn_hybrid_comparator_on_given_folds(styled_library, styled_data):
    from music_pipeline.features.extract import FeatureStore
    from music_pipeline.models.comparators import ComparisonConfig, ComparisonData, run_comparison

    _, data_dir = styled_library
    df = read_parquet(DataLayout(data_dir).embeddings_path).set_index("key")
    store = FeatureStore(data_dir)
    segments = np.stack([store.load(df.loc[k, "content_hash"]).segments for k in styled_data.keys])
    plan = make_folds(styled_data.y, styled_data.groups, max_splits=2, classes=styled_data.classes)
    data = ComparisonData(styled_data.X, styled_data.y, styled_data.classes, styled_data.groups, segments)
    (res,) = run_comparison(data, plan, ComparisonConfig(names=("cnn_knn_hybrid",), cnn_epochs=1, shuffled=False))
    assert res.shuffled is None and np.array(res.grouped["confusion"]).sum() == 24
    assert res.grouped["balanced_accuracy"] > 0.5  # the embedding half of the hybrid already separates the styles


def _save_model(data_dir: Path, model: GenreModel) -> None:
    publish_version(DataLayout(data_dir).models_dir / "genre", lambda d: model.save(d / "deployed"))


def test_classify_cli_gives_probabilities_and_clear_errors(styled_library, xgb_model, tmp_path, capsys):
    from music_pipeline.cli import main

    library, _ = styled_library
    data = tmp_path / "data"
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt " + bytes(range(256)) * 8)
    assert main(["classify", "--data", str(data), str(bad)]) == 2
    assert "no genre model saved yet" in capsys.readouterr().err

    _save_model(data, xgb_model)
    good = library / "drone" / "drone_01.flac"
    rc = main(["classify", "--data", str(data), "--json", "--explain", str(good), str(bad)])
    out = capsys.readouterr()
    assert rc == 1
    assert f"{bad}: not a readable audio file" in out.err
    first, second = [json.loads(line) for line in out.out.strip().splitlines()]
    assert first["file"] == str(good) and first["label"] == "drone"
    assert set(first["probabilities"]) == set(xgb_model.classes) and abs(sum(first["probabilities"].values()) - 1) < 1e-6
    assert "drone" in first["explanation"]["text"]
    assert second == {"file": str(bad), "error": second["error"]} and "not a readable audio file" in second["error"]


def _isolated_copy(styled_library, tmp_path: Path, relabel=None) -> Path:
    _, src = styled_library
    data = tmp_path / "data"
    shutil.copytree(src / "features", data / "features")
    df = read_parquet(DataLayout(src).embeddings_path)
    if relabel is not None:
        df = relabel(df)
    write_parquet(DataLayout(data).embeddings_path, df)
    return data


def _materialize(styled_library, data: Path, comparators: list[str]):
    import dagster as dg

    from music_pipeline.defs.assets import genre
    from music_pipeline.defs.resources import MusicPipelineResource

    pipeline = MusicPipelineResource(data_dir=str(data), library_dir=str(styled_library[0]), workers=1)
    run_config = {"ops": {
        # no XGBoost candidate: a non-XGBoost winner is deployed and an XGBoost explainer is fitted beside it
        "genre_classifier": {"config": {"families": ["logreg", "knn"], "feature_sets": ["full", "level_invariant"], "logreg_c": [0.2],
                                        "pca_components": [10], "n_estimators": 30, "learning_rate": 0.3}},
        "genre_comparison": {"config": {"comparators": comparators, "cnn_epochs": 2, "shuffled": False}},
    }}
    result = dg.materialize([genre.genre_classifier, genre.genre_comparison, genre.genre_classifier_beats_baseline],
                            resources={"pipeline": pipeline}, run_config=run_config)
    assert result.success
    mats = {e.asset_key.path[-1]: e.materialization.metadata for e in result.get_asset_materialization_events()}
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    return mats, checks


def test_assets_train_deploy_explain_and_rank(styled_library, tmp_path):
    def unlabel_some(df):
        df = df.copy()
        df.loc[df.index[[0, 6, 12, 18]], "label"] = None  # one per style: predicted, never trained on
        return df

    data = _isolated_copy(styled_library, tmp_path, unlabel_some)
    mats, checks = _materialize(styled_library, data, ["glcm_svm", "segment_pooled_logreg"])
    clf = mats["genre_classifier"]
    assert clf["trained"].value is True
    assert clf["labelled_tracks"].value == 20 and clf["unlabelled_tracks"].value == 4
    assert clf["estimate_kind"].value == "nested grouped CV" and clf["grouped_balanced_accuracy"].value >= 0.9
    assert checks["genre_classifier_beats_baseline"].passed
    layout = DataLayout(data)
    vdir = current_version(layout.models_dir / "genre")
    deployed = GenreModel.load(vdir / "deployed")
    assert deployed.candidate.family != "xgb" and GenreModel.load(vdir / "explainer").is_xgb  # SHAP stays available
    preds = read_parquet(layout.tables_dir / "genre_predictions.parquet")
    assert len(preds) == 24 and preds["explanation"].str.startswith("Predicted").all()
    unl = preds[preds["label"].isna()]
    assert (unl["predicted"] == unl["relpath"].str.split("/").str[0]).all()  # unseen tracks land in their style
    for png in ("confusion_grouped_cv", "shap_bar", "shap_beeswarm", "shap_dependence_top", "shap_waterfall"):
        assert (layout.plots_dir / "genre" / f"{png}.png").stat().st_size > 1000
    assert deployed.candidate.name == clf["deployed_model"].value

    table = (layout.reports_dir / "genre_models.md").read_text()
    for row in ("glcm_svm", "segment_pooled_logreg", "logreg[full]", "logreg[level_invariant]", "knn[full]",
                "deployed procedure (nested selection)", "majority-class baseline"):
        assert f"| {row} " in table, row
    assert mats["genre_comparison"]["folds"].value == "the genre_classifier's folds (folds.json)"


def test_fewer_than_two_labels_records_no_classifier(styled_library, tmp_path):
    data = _isolated_copy(styled_library, tmp_path, lambda df: df.assign(label=["pulse"] * 3 + [None] * (len(df) - 3)))
    mats, checks = _materialize(styled_library, data, ["glcm_svm"])
    clf = mats["genre_classifier"]
    assert clf["trained"].value is False and "at least 2 labels" in clf["reason"].value
    assert mats["genre_comparison"]["compared"].value is False
    check = checks["genre_classifier_beats_baseline"]
    assert not check.passed and "at least 2 labels" in check.metadata["reason"].value
    assert current_version(DataLayout(data).models_dir / "genre") is None


def test_a_label_with_one_source_trains_but_reports_that_cv_is_impossible(styled_library, tmp_path):
    def one_drone(df):
        df = df.copy()
        drones = df.index[df["label"] == "drone"]
        df.loc[drones[1:], "label"] = None
        return df

    data = _isolated_copy(styled_library, tmp_path, one_drone)
    mats, checks = _materialize(styled_library, data, ["glcm_svm"])
    clf = mats["genre_classifier"]
    assert clf["trained"].value is True and clf["estimate_kind"].value == "none"
    assert "drone has fewer than 2 groups" in clf["folds"].value
    check = checks["genre_classifier_beats_baseline"]
    assert not check.passed and "drone has fewer than 2 groups" in check.metadata["reason"].value
    assert "drone" in GenreModel.load(current_version(DataLayout(data).models_dir / "genre") / "deployed").classes
