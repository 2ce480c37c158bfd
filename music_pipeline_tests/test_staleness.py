"""Models retrain when it pays: never trained, code changed, or more than a share of their tracks changed."""

import dagster as dg
import pandas as pd
import pytest

from music_pipeline import settings
from music_pipeline.artifacts import write_parquet
from music_pipeline.layout import DataLayout
from music_pipeline.models import staleness

from .test_dagster import dagster_home  # noqa: F401  (fixture)


def _library(layout: DataLayout, labels: dict[str, str | None]) -> None:
    write_parquet(
        layout.embeddings_path,
        pd.DataFrame({"key": list(labels), "content_hash": [f"h_{k}" for k in labels], "label": list(labels.values())}),
    )


def test_verdicts_follow_the_rules(tmp_path):
    layout = DataLayout(tmp_path)
    tracks = {f"t{i}": ("a" if i % 2 else "b") for i in range(20)}
    _library(layout, tracks)
    assert staleness.verdict(layout, "genre_classifier", "2", 0.10).why.startswith("never trained")
    staleness.record_training(layout, "genre_classifier", "2")
    fresh = staleness.verdict(layout, "genre_classifier", "2", 0.10)
    assert not fresh.stale and fresh.changed == 0 and fresh.trained_on == 20

    # two new tracks and one relabelled: 3 of 20 = 15 % > 10 %
    _library(layout, {**tracks, "t0": "a", "n1": "a", "n2": "b"})
    v = staleness.verdict(layout, "genre_classifier", "2", 0.10)
    assert v.stale and v.changed == 3 and "3 of its 20 training tracks changed (15% > 10%)" in v.why
    assert not staleness.verdict(layout, "genre_classifier", "2", 0.20).stale  # a looser share keeps it

    # unlabelled tracks do not count for the genre models, but do for the map
    _library(layout, {**tracks, "u1": None, "u2": None, "u3": None})
    assert not staleness.verdict(layout, "genre_classifier", "2", 0.10).stale
    staleness.record_training(layout, "embedding_map", "1", tracks={f"h_{k}": "" for k in tracks})
    assert staleness.verdict(layout, "embedding_map", "1", 0.10).stale

    # a code change retrains whatever the data
    v = staleness.verdict(layout, "genre_classifier", "3", 0.10)
    assert v.stale and "code changed (version 2 → 3)" in v.why


def test_share_comes_from_the_environment_and_is_checked(monkeypatch):
    monkeypatch.setenv(settings.ENV_RETRAIN_SHARE, "0.25")
    assert settings.retrain_share() == 0.25
    monkeypatch.setenv(settings.ENV_RETRAIN_SHARE, "2")
    with pytest.raises(ValueError, match="between 0 and 1"):
        settings.retrain_share()


def test_build_retrains_only_stale_models_and_says_why(tmp_path, dagster_home, monkeypatch):  # noqa: F811 - the pytest fixture imported above
    """Through `run_build` with the real ingest assets and a stand-in model (training the real ones
    would make the test slow): trained once, kept when little changed (an observation says why),
    retrained with --retrain."""
    from music_pipeline import definitions
    from music_pipeline.build.runner import run_build
    from music_pipeline.defs.jobs import build_jobs
    from music_pipeline.defs.resources import MusicPipelineResource
    from music_pipeline.defs.retraining import record_trained, retraining_metadata
    from music_pipeline.settings import Settings
    from music_pipeline.synth import noise, tone

    from .audio_corpus import write
    from .test_dagster import make_library

    reasons = []

    @dg.asset(name="genre_classifier", deps=[dg.AssetKey("embeddings")], code_version="7")
    def stand_in(context: dg.AssetExecutionContext, pipeline: MusicPipelineResource) -> dg.MaterializeResult:
        md = retraining_metadata(context, pipeline.layout)
        reasons.append(md["retrained_because"])
        record_trained(context, pipeline.layout)
        return dg.MaterializeResult(metadata=md)

    real_build = definitions.build_definitions

    def build_definitions(pipeline=None):
        real = real_build(pipeline)
        models = {"difficulty_cnn", "embedding_map", "genre_classifier", "genre_comparison", "track_genres"}
        assets = [a for a in real.assets if not {k.to_user_string() for k in a.keys} & models] + [stand_in]
        checks = [c for c in real.asset_checks if not any(k.asset_key.to_user_string() in models for k in c.check_keys)]
        jobs, schedules = build_jobs(assets)
        return dg.Definitions(
            assets=assets, asset_checks=checks, jobs=jobs, schedules=schedules, resources=real.resources
        )

    monkeypatch.setattr(definitions, "build_definitions", build_definitions)
    monkeypatch.setenv(settings.ENV_RETRAIN_SHARE, "0.2")
    lib = make_library(tmp_path / "lib", 6)
    build_settings = Settings(data_dir=tmp_path / "data", library_dir=lib, workers=1)

    first = run_build(build_settings, log=lambda *_: None)
    assert first.ok, (first.failed_assets, first.failed_checks)
    assert len(reasons) == 1 and reasons[0].startswith("never trained")

    write(lib / "style" / "new.wav", tone(660, 4) + noise(4, amp=0.02, seed=9))  # 1 of 6: 17 % ≤ 20 %
    lines = []
    assert run_build(build_settings, log=lines.append).ok
    assert len(reasons) == 1, "a model was retrained although too little changed"
    assert any("models kept" in line for line in lines)
    instance = dg.DagsterInstance.get()
    (obs,) = instance.fetch_observations(dg.AssetKey("genre_classifier"), limit=10).records
    md = obs.asset_observation.metadata
    assert md["retrained"].value is False and "1 of its 6 training tracks changed" in md["why"].value

    assert run_build(build_settings, log=lambda *_: None, retrain=True).ok
    assert len(reasons) == 2 and reasons[1].startswith("forced (build --retrain)")
