"""Genre: folds that keep sources apart, the nested estimate and its CI, the saved model (every family,
every view), explanations of the deployed model, the comparators, `classify` and `models`
(synthetic audio; the learned embedding is the real pretrained network on it)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from music_pipeline.artifacts import read_parquet, write_parquet
from music_pipeline.genre.candidates import Candidate, GenreModel, XgbSettings
from music_pipeline.genre.cv import SearchConfig, evaluate, fold_assignment, make_folds, plan_from_assignment
from music_pipeline.genre.data import LabelledData, feature_view, labelled_data
from music_pipeline.genre.persistence import ModelFileError, load_model, save_model
from music_pipeline.genre.versions import current_version, publish_version
from music_pipeline.layout import DataLayout
from music_pipeline.learned.store import LEARNED_NAMES, TAG_NAMES

FAST_XGB = XgbSettings(n_estimators=30, learning_rate=0.3)
HANDCRAFTED = (Candidate("logreg", "full", C=0.2), Candidate("knn", "full", k=5))


def _grouped(df):
    """Three sources per style: tracks 1-2, 3-4, 5-6 of each style share a group."""
    df = df.copy()
    df["group"] = [f"{r.split('/')[0]}-{(i % 6) // 2}" for i, r in enumerate(df["relpath"])]
    return df


@pytest.fixture(scope="module")
def styled_data(styled_library):
    _, data_dir = styled_library
    return labelled_data(_grouped(read_parquet(DataLayout(data_dir).embeddings_path)))


@pytest.fixture(scope="module")
def learned_table(styled_learned):
    from music_pipeline.learned.table import read_learned_table, with_learned

    _, data = styled_learned
    return _grouped(with_learned(read_parquet(DataLayout(data).embeddings_path), read_learned_table(data)))


def _fake_blocks(n: int, seed: int = 0) -> dict:
    """Learned-shaped and tag-shaped blocks (persistence only needs their shapes)."""
    rng = np.random.default_rng(seed)
    return {"learned": rng.standard_normal((n, len(LEARNED_NAMES))), "tags": rng.uniform(0, 1, (n, len(TAG_NAMES)))}


def test_synthetic_styles_are_separated_with_sources_held_out(styled_data):
    assert styled_data.classes == ["arpeggio", "drone", "noise_rock", "pulse"] and styled_data.n == 24
    ev = evaluate(styled_data, SearchConfig(candidates=HANDCRAFTED, xgb=FAST_XGB, bootstrap=200))
    assert ev.plan.method == "leave-one-group-out" and ev.plan.n_splits == 12 and len(ev.nested_choices) == 12
    est = ev.estimate
    assert est.method.startswith("nested leave-one-group-out") and est.balanced_accuracy >= 0.9
    assert est.ci95[0] <= est.balanced_accuracy <= est.ci95[1] <= 1.0
    assert est.balanced_accuracy > ev.baseline_grouped["balanced_accuracy"] + 0.5
    assert set(est.per_group) == set(styled_data.groups)
    for r in ev.results:  # every candidate, scored on the same folds
        assert np.array(r.grouped["confusion"]).sum() == 24


def test_training_budget_keeps_each_labels_share_and_is_seeded(styled_data):
    from music_pipeline.genre.data import within_budget

    assert within_budget(styled_data, 0) is styled_data and within_budget(styled_data, 24) is styled_data
    small = within_budget(styled_data, 12, seed=3)
    assert small.n == 12 and small.n_over_budget == 12
    assert np.bincount(small.y, minlength=4).tolist() == [3, 3, 3, 3]  # 6 per label before: the shares kept
    assert set(small.keys) <= set(styled_data.keys) and list(small.keys) == sorted(
        small.keys, key=list(styled_data.keys).index
    )
    for block, rows in small.blocks.items():  # rows travel with their keys
        pos = [list(styled_data.keys).index(k) for k in small.keys]
        assert np.array_equal(rows, styled_data.blocks[block][pos])
    again = within_budget(styled_data, 12, seed=3)
    assert list(again.keys) == list(small.keys)  # same seed, same subsample
    assert list(within_budget(styled_data, 12, seed=4).keys) != list(small.keys)


def test_a_budgeted_training_still_predicts_every_track_and_says_what_it_left_out(styled_library):
    from music_pipeline.genre.training import train_genre_classifier

    _, data_dir = styled_library
    table = _grouped(read_parquet(DataLayout(data_dir).embeddings_path))
    result = train_genre_classifier(
        table, SearchConfig(candidates=HANDCRAFTED[:1], xgb=FAST_XGB, bootstrap=50, max_tracks=16)
    )
    assert result.data.n == 16 and result.report["n_over_budget"] == 8 and result.report["n_labelled"] == 16
    preds = result.predictions
    assert len(preds) == 24 and preds["predicted"].notna().all()
    left_out = ~preds["key"].isin(result.data.keys)
    assert (
        left_out.sum() == 8
        and (
            preds.loc[left_out, "probability_source"] == "deployed model (labelled, left out by the training budget)"
        ).all()
    )
    assert (preds.loc[~left_out, "probability_source"] == "out-of-fold (grouped CV)").all()


def test_grouped_folds_never_put_a_group_on_both_sides():
    groups = np.array([f"g{i}" for i in range(10) for _ in range(3)])
    y = np.array([0] * 12 + [1] * 9 + [2] * 9)  # g0-g3 → 0, g4-g6 → 1, g7-g9 → 2
    plan = make_folds(y, groups, classes=["a", "b", "c"])
    assert plan.method == "leave-one-group-out" and plan.n_splits == 10
    for (tr, te), g in zip(plan.grouped, sorted(set(groups)), strict=True):
        assert set(groups[te]) == {g} and g not in set(groups[tr])
    # many groups: StratifiedGroupKFold, still no group on both sides, every track tested once
    many = np.array([f"g{i}" for i in range(30) for _ in range(2)])
    plan = make_folds(np.arange(60) % 3, many, max_splits=5, logo_max_groups=20)
    assert plan.method == "StratifiedGroupKFold" and plan.n_splits == 5
    assert sorted(np.concatenate([te for _, te in plan.grouped]).tolist()) == list(range(60))
    assert all(not set(many[tr]) & set(many[te]) for tr, te in plan.grouped)
    assert any(set(many[tr]) & set(many[te]) for tr, te in plan.shuffled)  # the leak the grouped score avoids
    # the folds survive the JSON round trip that genre_comparison relies on
    keys = np.array([f"k{i}" for i in range(30)])
    labels = np.array(["a", "b", "c"])[y]
    d = LabelledData({"handcrafted": np.zeros((30, 1))}, labels, ["a", "b", "c"], y, groups, keys, keys, 0, 30)
    plan = make_folds(y, groups, classes=["a", "b", "c"])
    again = plan_from_assignment(json.loads(json.dumps(fold_assignment(d, plan))), keys)
    for (tr1, te1), (tr2, te2) in zip(plan.grouped, again.grouped, strict=True):
        assert np.array_equal(np.sort(te1), te2) and np.array_equal(np.sort(tr1), tr2)
    assert plan_from_assignment(fold_assignment(d, plan), keys[::-1]) is None  # other tracks: not reused


def test_too_few_groups_means_no_cv_and_says_why(styled_data):
    groups = np.array(["album"] * 6 + [f"t{i}" for i in range(18)])  # all 'arpeggio' tracks share one group
    plan = make_folds(styled_data.y, groups, classes=styled_data.classes)
    assert not plan.possible and "arpeggio has fewer than 2 groups" in plan.note
    one_label = make_folds(np.zeros(5, int), np.arange(5).astype(str))
    assert not one_label.possible and "at least 2 labels" in one_label.note


def test_nested_estimate_is_not_inflated_by_the_choice():
    """Labels that no feature predicts: the best flat candidate looks better than chance by luck;
    the nested estimate, where the choice never sees the scored source, stays near chance."""
    rng = np.random.default_rng(3)
    n_groups, per = 16, 6
    groups = np.repeat([f"s{i}" for i in range(n_groups)], per)
    y = np.repeat(np.arange(n_groups) % 2, per)
    X = rng.standard_normal((len(y), 641))
    labels = np.array(["a", "b"])[y]
    data = LabelledData({"handcrafted": X}, labels, ["a", "b"], y, groups, groups, groups, 0, len(y))
    cands = tuple(Candidate("knn", "full", k=k) for k in (1, 3, 5, 9, 15)) + (
        Candidate("logreg", "full", C=0.01),
        Candidate("logreg", "full", C=1.0),
    )
    ev = evaluate(data, SearchConfig(candidates=cands, bootstrap=200))
    best_flat = max(r.grouped["balanced_accuracy"] for r in ev.results)
    assert ev.estimate.balanced_accuracy <= best_flat
    assert abs(ev.estimate.balanced_accuracy - 0.5) < 0.2 and ev.estimate.ci95[0] < 0.5 < ev.estimate.ci95[1]


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


def test_fusion_view_balances_its_blocks(styled_data):
    from music_pipeline.genre.data import MissingInputs, block_weights

    blocks = {"handcrafted": styled_data.X, **_fake_blocks(styled_data.n)}
    Xv, names = feature_view(blocks, "fusion")
    assert Xv.shape == (24, 639 + 400) and names[-1] == LEARNED_NAMES[-1]
    w = block_weights("fusion")
    assert np.isclose((w[:639] ** 2).sum(), (w[639:] ** 2).sum()) and np.isclose((w**2).sum(), len(w))
    with pytest.raises(MissingInputs, match="learned"):
        feature_view(styled_data.X, "learned")


@pytest.mark.parametrize(
    "candidate",
    [
        Candidate("xgb", "level_invariant", pca=10),
        Candidate("logreg", "full", C=0.2),
        Candidate("knn", "full", k=5),
        Candidate("svm", "fusion", C=1.0),
        Candidate("logreg", "learned", C=0.1),
        Candidate("logreg", "tags", C=0.1),
    ],
    ids=lambda c: c.name,
)
def test_saved_model_reloads_with_identical_probabilities(styled_data, tmp_path, candidate):
    blocks = {"handcrafted": styled_data.X, **_fake_blocks(styled_data.n)}
    blocks["learned"][:, 0] += 3 * styled_data.y  # something to learn in the learned block too
    model = GenreModel.fit(candidate, blocks, styled_data.labels, xgb_settings=FAST_XGB)
    save_model(model, tmp_path / "m")
    assert not list((tmp_path / "m").glob("*.pkl")) and not list((tmp_path / "m").glob("*.joblib"))
    again = load_model(tmp_path / "m")
    assert again.classes == model.classes and again.candidate == candidate
    np.testing.assert_allclose(again.predict_proba(blocks), model.predict_proba(blocks), rtol=1e-12, atol=1e-12)
    assert np.allclose(model.predict_proba(blocks).sum(axis=1), 1.0)
    victim = tmp_path / "m" / "preprocess.npz"  # an edited or half-written file is refused, not silently used
    raw = bytearray(victim.read_bytes())
    raw[-1] ^= 0xFF
    victim.write_bytes(bytes(raw))
    with pytest.raises(ModelFileError, match="does not match"):
        load_model(tmp_path / "m")


def test_svm_probabilities_are_the_calibrated_ones(styled_data):
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.svm import SVC

    m = GenreModel.fit(Candidate("svm", "full", C=1.0), styled_data.X, styled_data.labels)
    Z = m.model_space(styled_data.X)
    ref = CalibratedClassifierCV(
        SVC(C=1.0, kernel="rbf", gamma="scale", class_weight="balanced"), method="temperature", ensemble=False, cv=3
    )
    ref.fit(Z, styled_data.y)
    np.testing.assert_allclose(m.pipeline.named_steps["model"].predict_proba(Z), ref.predict_proba(Z), atol=1e-8)


def test_a_model_of_another_learned_version_is_refused(styled_data, tmp_path, monkeypatch):
    from music_pipeline.genre import persistence

    blocks = {"handcrafted": styled_data.X, **_fake_blocks(styled_data.n)}
    save_model(GenreModel.fit(Candidate("logreg", "learned", C=0.1), blocks, styled_data.labels), tmp_path / "m")
    monkeypatch.setattr(persistence, "LEARNED_CODE_VERSION", "999")
    with pytest.raises(ModelFileError, match="other inputs"):
        load_model(tmp_path / "m")


def test_candidate_names_parse_back():
    for c in SearchConfig().candidates + (Candidate("xgb", "full", pca=15, max_depth=3),):
        assert Candidate.parse(c.name) == c
    with pytest.raises(ValueError, match="unknown view"):
        Candidate.parse("logreg[nope, C=1]")


def test_versions_switch_atomically_and_old_ones_are_pruned(tmp_path):
    for i in range(4):
        publish_version(tmp_path, lambda d, i=i: (d.mkdir(), (d / "n.txt").write_text(str(i))), keep=2)
    cur = current_version(tmp_path)
    assert (cur / "n.txt").read_text() == "3"
    assert len([p for p in tmp_path.iterdir() if p.is_dir()]) == 2
    with pytest.raises(RuntimeError):
        publish_version(tmp_path, lambda d: (_ for _ in ()).throw(RuntimeError("boom")))
    assert current_version(tmp_path) == cur  # a failed write leaves the pointer alone


def test_tree_shap_values_plus_base_reproduce_the_margin(styled_data):
    from scipy.special import softmax

    from music_pipeline.genre import explain as ex

    model = GenreModel.fit(Candidate("xgb", "full", pca=10), styled_data.X, styled_data.labels, xgb_settings=FAST_XGB)
    res = ex.tree_shap(model, styled_data.X)
    K, C = len(styled_data.classes), model.pipeline.named_steps["pca"].n_components_
    assert res.values.shape == (24, C, K) and res.base.shape == (K,)
    margin = ex.margin(model, styled_data.X)
    np.testing.assert_allclose(res.values.sum(axis=1) + res.base, margin, atol=1e-4)
    np.testing.assert_allclose(softmax(margin, axis=1), model.predict_proba(styled_data.X), atol=1e-5)


def test_linear_explanation_is_exact_and_quotes_the_deployed_probability(styled_data):
    """The probability in the explanation is the deployed model's, and its contributions add up to
    that model's logits (no second 'explainer' model with another p)."""
    from scipy.special import softmax

    from music_pipeline.genre import explain as ex

    blocks = {"handcrafted": styled_data.X, **_fake_blocks(styled_data.n)}
    model = GenreModel.fit(Candidate("logreg", "fusion", C=0.1), blocks, styled_data.labels)
    res = ex.linear_shap(model, blocks)
    logits = ex.linear_margin(model, blocks)
    np.testing.assert_allclose(res.values.sum(axis=1) + res.base, logits, atol=1e-9)
    np.testing.assert_allclose(softmax(logits, axis=1), model.predict_proba(blocks), atol=1e-9)
    assert ex.LEARNED_CONCEPT in res.component_names and "timbre colour" in res.component_names
    proba = model.predict_proba(blocks)
    e = ex.explain_prediction(
        model, blocks, 5, proba[5], res, blocks["tags"][5], ex.tag_profiles(blocks["tags"], styled_data.labels)
    )
    assert e["text"].startswith(f"Predicted {model.classes[proba[5].argmax()]} (p={proba[5].max():.2f};")
    assert "The pretrained tagger hears" in e["text"] and e["method"].startswith("linear SHAP")


def test_neighbour_models_are_explained_by_their_neighbours(styled_data):
    from music_pipeline.genre import explain as ex

    for cand in (Candidate("knn", "full", k=3), Candidate("svm", "full", C=1.0)):
        model = GenreModel.fit(cand, styled_data.X, styled_data.labels)
        model.info.update(train_relpaths=styled_data.relpaths.tolist(), train_labels=styled_data.labels.tolist())
        proba = model.predict_proba(styled_data.X)
        e = ex.explain_prediction(model, styled_data.X, 0, proba[0])
        assert (
            e["method"] == "nearest training tracks"
            and e["neighbours"]
            and ex.attribution(model, styled_data.X) is None
        )
        if cand.family == "knn":  # its own nearest neighbour is the track itself
            assert e["neighbours"][0]["track"] == styled_data.relpaths[0]
        if cand.family == "knn":
            assert "its nearest neighbours (whose votes make the prediction)" in e["text"]
        else:
            assert "an RBF SVM has no exact per-feature attribution" in e["text"]


def test_plain_language_names_and_boundary_songs():
    from music_pipeline.genre.explain import boundary_songs, describe_component, feature_concept

    assert feature_concept("spectral_centroid_mean")[0] == "brightness"
    assert feature_concept("mfcc_mean_03")[0] == "brightness/spectral tilt"
    assert feature_concept("mel_mean_002")[0] == "sub-bass energy"
    assert feature_concept("tag_mtt_strings")[0] == "tag: strings"
    names = ["spectral_centroid_mean", "mfcc_mean_02", "mfcc_mean_03", "mfcc_mean_04", "tempo_bpm"]
    assert (
        describe_component(np.array([0.9, 0.5, 0.5, 0.5, 0.01]), names, top=4, concepts=2)
        == "brightness/spectral tilt (MFCC 2–4); brightness (spectral centroid)"
    )
    proba = np.array([[0.50, 0.45, 0.05], [0.9, 0.05, 0.05], [0.2, 0.35, 0.45]])
    b = boundary_songs(proba, ["a", "b", "c"], 0.15)
    assert b["row"].tolist() == [0, 2] and b["second"].tolist() == ["b", "b"]


def test_mel_chroma_finds_the_pitch_class_of_a_tone():
    from music_pipeline.features.spectra import compute_spectra
    from music_pipeline.genre.comparison import chroma_patches
    from music_pipeline.synth import tone

    for freq, pc in ((440.0, 9), (1046.5, 0), (740.0, 6)):  # A4, C6, F#5
        mel = compute_spectra(tone(freq, 3.0)).log_mel[:, :128]
        chroma = chroma_patches(mel[None, None])[0, 0]
        assert chroma.shape == (12, 128) and np.bincount(chroma.argmax(axis=0)).argmax() == pc, freq


def test_mfcc_cnn_learns_the_styles(styled_library, styled_data):
    """The seed's patch CNN predicted one label for almost everything; the fixed one (pooling over
    time only, a fixed training budget) separates four distinct synthetic styles on held-out sources."""
    from music_pipeline.features.extract import FeatureStore
    from music_pipeline.genre.comparison import ComparisonConfig, ComparisonData, run_comparison

    _, data_dir = styled_library
    df = read_parquet(DataLayout(data_dir).embeddings_path).set_index("key")
    store = FeatureStore(data_dir)
    segments = np.stack([store.load(df.loc[k, "content_hash"]).segments for k in styled_data.keys])
    plan = make_folds(styled_data.y, styled_data.groups, max_splits=3, classes=styled_data.classes, logo_max_groups=0)
    data = ComparisonData(styled_data.X, styled_data.y, styled_data.classes, styled_data.groups, segments)
    cnn, hybrid = run_comparison(data, plan, ComparisonConfig(names=("cnn_mfcc", "cnn_knn_hybrid"), cnn_epochs=15))
    assert cnn.shuffled is None and np.array(cnn.grouped["confusion"]).sum() == 24
    assert cnn.grouped["balanced_accuracy"] >= 0.6, cnn.grouped["confusion"]
    assert (
        len({int(np.argmax(row)) for row in np.array(cnn.grouped["confusion"]).T if sum(row)}) >= 3
    )  # not one label for all
    assert hybrid.grouped["balanced_accuracy"] >= 0.6


def _save_model(data_dir: Path, model: GenreModel, profiles=None) -> None:
    from music_pipeline.artifacts import write_json

    def write(d):
        save_model(model, d / "deployed")
        write_json(d / "tag_profiles.json", profiles or {})

    publish_version(DataLayout(data_dir).models_dir / "genre", write)


def test_classify_cli_gives_probabilities_tags_and_clear_errors(styled_library, learned_table, tmp_path, capsys):
    from music_pipeline.cli import main
    from music_pipeline.genre import explain as ex
    from music_pipeline.genre.data import inputs_of

    library, _ = styled_library
    data = tmp_path / "data"
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt " + bytes(range(256)) * 8)
    assert main(["classify", "--data", str(data), str(bad)]) == 2
    assert "no genre model saved yet" in capsys.readouterr().err

    d = labelled_data(learned_table)
    model = GenreModel.fit(Candidate("logreg", "learned", C=0.1), d.blocks, d.labels)
    _save_model(data, model, ex.tag_profiles(d.blocks["tags"], d.labels))
    good = library / "drone" / "drone_01.flac"
    rc = main(["classify", "--data", str(data), "--json", "--explain", str(good), str(bad)])
    out = capsys.readouterr()
    assert rc == 1
    assert f"{bad}: not a readable audio file" in out.err
    first, second = [json.loads(line) for line in out.out.strip().splitlines()]
    assert first["file"] == str(good) and first["label"] == "drone" and first["model"] == model.candidate.name
    assert set(first["probabilities"]) == set(model.classes) and abs(sum(first["probabilities"].values()) - 1) < 1e-6
    assert 0 < len(first["tags"]) <= 10 and all(0 <= v <= 1 for v in first["tags"].values())
    # the explanation quotes the deployed model's own probability, the one in "probabilities"
    assert f"(p={first['probabilities']['drone']:.2f};" in first["explanation"]["text"]
    assert first["explanation"]["model"] == model.candidate.name and "tagger hears" in first["explanation"]["text"]
    # and the file's learned inputs are the ones the library table holds for it
    row = learned_table.index[learned_table["relpath"] == "drone/drone_01.flac"][0]
    expected = model.predict_proba({k: v[[row]] for k, v in inputs_of(learned_table).items()})[0]
    assert np.allclose([first["probabilities"][c] for c in model.classes], expected, atol=1e-4)
    assert second == {"file": str(bad), "error": second["error"]} and "not a readable audio file" in second["error"]


def _isolated_copy(styled_learned, tmp_path: Path, relabel=None) -> Path:

    _, src = styled_learned
    data = tmp_path / "data"
    shutil.copytree(src / "features", data / "features")
    shutil.copytree(src / "learned", data / "learned")
    df = _grouped(read_parquet(DataLayout(src).embeddings_path))
    if relabel is not None:
        df = relabel(df)
    write_parquet(DataLayout(data).embeddings_path, df)
    shutil.copyfile(DataLayout(src).learned_table_path, DataLayout(data).learned_table_path)
    return data


def _materialize(styled_learned, data: Path, comparators: list[str]):
    import dagster as dg

    from music_pipeline.defs.assets import genre
    from music_pipeline.defs.resources import MusicPipelineResource

    pipeline = MusicPipelineResource(data_dir=str(data), library_dir=str(styled_learned[0]), workers=1)
    run_config = {
        "ops": {
            "genre_classifier": {
                "config": {
                    "candidates": ["logreg[full, C=0.2]", "logreg[learned, C=0.1]", "svm[fusion, C=1]"],
                    "bootstrap": 100,
                }
            },
            "genre_comparison": {
                "config": {
                    "comparators": comparators,
                    "cnn_epochs": 2,
                    "shuffled": False,
                    "reference_candidates": ["logreg[learned, C=0.1]", "xgb[full, pca=10, depth=2]"],
                }
            },
        }
    }
    result = dg.materialize(
        [genre.genre_classifier, genre.genre_comparison, genre.genre_classifier_beats_baseline],
        resources={"pipeline": pipeline},
        run_config=run_config,
    )
    assert result.success
    mats = {e.asset_key.path[-1]: e.materialization.metadata for e in result.get_asset_materialization_events()}
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    return mats, checks


def test_dagster_configs_take_their_defaults_from_the_core():
    from music_pipeline.defs.assets.genre import GenreClassifierConfig, GenreComparisonConfig
    from music_pipeline.genre.comparison import ComparisonConfig

    cfg, core = GenreClassifierConfig(), SearchConfig()
    assert cfg.search() == core
    cmp = GenreComparisonConfig().comparison()
    assert cmp == ComparisonConfig()


def test_assets_train_deploy_explain_rank_and_publish_a_card(styled_learned, tmp_path, capsys):
    from music_pipeline.cli import main

    def unlabel_some(df):
        df = df.copy()
        df.loc[df.index[[0, 6, 12, 18]], "label"] = None  # one per style: predicted, never trained on
        return df

    data = _isolated_copy(styled_learned, tmp_path, unlabel_some)
    mats, checks = _materialize(styled_learned, data, ["glcm_svm", "segment_pooled_logreg"])
    clf = mats["genre_classifier"]
    assert clf["trained"].value is True and clf["training_size"].value == 20 and clf["unlabelled_tracks"].value == 4
    assert (
        clf["estimate_kind"].value.startswith("nested leave-one-group-out")
        and clf["grouped_balanced_accuracy"].value >= 0.9
    )
    assert checks["genre_classifier_beats_baseline"].passed
    layout = DataLayout(data)
    vdir = current_version(layout.genre_dir)
    deployed = load_model(vdir / "deployed")
    assert deployed.candidate.name == clf["deployed_model"].value
    preds = read_parquet(layout.genre_predictions_path)
    assert len(preds) == 24 and preds["explanation"].str.startswith("Predicted").all()
    unl = preds[preds["label"].isna()]
    assert (unl["predicted"] == unl["relpath"].str.split("/").str[0]).all()  # unseen tracks land in their style
    assert (layout.genre_plots_dir / "confusion_grouped_cv.png").stat().st_size > 1000
    # every track, unlabelled ones included, classified by the deployed model right away
    genres = read_parquet(layout.tables_dir / "track_genres.parquet")
    assert len(genres) == 24 and set(genres["version"]) == {vdir.name} and genres["probability"].between(0, 1).all()
    unl = genres[genres["label"].isna()]
    assert len(unl) == 4 and (unl["genre"] == unl["relpath"].str.split("/").str[0]).all()
    assert clf["retrained_because"].value.startswith("never trained")

    table = (layout.reports_dir / "genre_models.md").read_text()
    for row in (
        "glcm_svm",
        "segment_pooled_logreg",
        "logreg[learned, C=0.1]",
        "xgb[full, pca=10, depth=2]",
        "deployed procedure (nested selection)",
        "majority-class baseline",
    ):
        assert f"| {row} " in table, row
    assert mats["genre_comparison"]["folds"].value.startswith("the genre_classifier's folds (folds.json)")

    # the model card: in the metadata and from `models --json`, the same facts
    card = clf["model_card"].value
    assert main(["models", "--data", str(data), "--json"]) == 0
    cards = {c["name"]: c for c in json.loads(capsys.readouterr().out)["models"]}
    genre = cards["genre_classifier"]
    assert genre["built"] and genre["version"] == vdir.name == card["version"] and genre["training_size"] == 20
    est = genre["estimate"]
    assert est["balanced_accuracy"] == pytest.approx(clf["grouped_balanced_accuracy"].value)
    assert est["ci95"][0] <= est["balanced_accuracy"] <= est["ci95"][1] and est["method"].startswith(
        "nested leave-one-group-out"
    )
    assert cards["similarity_index"]["built"] is False and "has not run" in cards["similarity_index"]["reason"]
    assert main(["models", "--data", str(data)]) == 0
    assert "genre_classifier  version " + vdir.name in capsys.readouterr().out


def test_fewer_than_two_labels_records_no_classifier(styled_learned, tmp_path):
    data = _isolated_copy(styled_learned, tmp_path, lambda df: df.assign(label=["pulse"] * 3 + [None] * (len(df) - 3)))
    mats, checks = _materialize(styled_learned, data, ["glcm_svm"])
    clf = mats["genre_classifier"]
    assert clf["trained"].value is False and "at least 2 labels" in clf["reason"].value
    assert mats["genre_comparison"]["compared"].value is False
    check = checks["genre_classifier_beats_baseline"]
    assert not check.passed and "at least 2 labels" in check.metadata["reason"].value
    assert current_version(DataLayout(data).models_dir / "genre") is None


def test_a_label_with_one_source_trains_but_reports_that_cv_is_impossible(styled_learned, tmp_path):
    def one_drone_source(df):
        df = df.copy()
        drones = df.index[df["label"] == "drone"]
        df.loc[drones, "group"] = "the-only-drone-album"
        return df

    data = _isolated_copy(styled_learned, tmp_path, one_drone_source)
    mats, checks = _materialize(styled_learned, data, ["glcm_svm"])
    clf = mats["genre_classifier"]
    assert clf["trained"].value is True and clf["estimate_kind"].value.startswith("none")
    assert "drone has fewer than 2 groups" in clf["folds"].value
    check = checks["genre_classifier_beats_baseline"]
    assert not check.passed and "drone has fewer than 2 groups" in check.metadata["reason"].value
    assert "drone" in load_model(current_version(DataLayout(data).models_dir / "genre") / "deployed").classes
