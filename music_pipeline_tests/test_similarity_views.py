"""The similarity index chooses among the 641 dims, the learned embedding and their fusion, and an
outside file is projected with the learned embedding when the chosen space needs it."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from music_pipeline.artifacts import read_parquet
from music_pipeline.layout import DataLayout


@pytest.fixture(scope="module")
def table(styled_learned):
    from music_pipeline.learned.table import read_learned_table, with_learned

    _, data = styled_learned
    return with_learned(read_parquet(DataLayout(data).embeddings_path), read_learned_table(data))


def test_learned_spaces_are_candidates_and_fusion_averages_the_cosines(table):
    from music_pipeline.features.embedding import FEATURE_NAMES
    from music_pipeline.search.exact import normalise
    from music_pipeline.search.index import TrackIndex, learned_block

    index = TrackIndex.build(table)
    scores = index.info["selection"]["scores"]
    assert {"standardised", "pca", "learned", "fusion"} <= set(scores) and index.info["learned_available"]
    assert index.info["selection"]["measured_on"] == ["label"]  # the styled library has no groups
    fused = TrackIndex.build(table, transform="fusion")
    raw, learned = table[FEATURE_NAMES].to_numpy(float), learned_block(table)
    h = normalise(fused.transform.standardise(raw))
    l_ = normalise((learned - fused.transform.learned_mean) / fused.transform.learned_std)
    v = np.asarray(fused.index.vectors)
    np.testing.assert_allclose(v[0] @ v[5], (h[0] @ h[5] + l_[0] @ l_[5]) / 2, atol=1e-5)
    without = TrackIndex.build(table.drop(columns=[c for c in table.columns if c.startswith("msd_")]))
    assert "learned" not in without.info["selection"]["scores"]  # no learned embedding: the 641-dim spaces only


def test_an_outside_file_is_embedded_with_the_learned_network(styled_learned, table, tmp_path):
    import soundfile as sf

    from music_pipeline.search.discovery import Discovery
    from music_pipeline.search.index import IndexNotBuilt, TrackIndex

    library, _ = styled_learned
    index = TrackIndex.build(table, transform="learned", library_root=str(library))
    index.save(tmp_path / "idx")
    disc = Discovery(TrackIndex.load(tmp_path / "idx"), library_root=library)
    src = library / "arpeggio" / "arpeggio_03.wav"
    y, sr = sf.read(src)
    outside = tmp_path / "outside.wav"
    sf.write(outside, 0.5 * y, sr)  # 6 dB quieter: other content hash, so it is embedded on the fly
    q, hits = disc.similar(str(outside), 3)
    assert q.external and hits[0].relpath == "arpeggio/arpeggio_03.wav" and hits[0].score > hits[1].score
    state = json.loads((tmp_path / "idx" / "index.json").read_text())
    state["learned_version"] = "musicnn-v0-p20"
    (tmp_path / "idx" / "index.json").write_text(json.dumps(state))
    with pytest.raises(IndexNotBuilt, match="learned embedding"):
        TrackIndex.load(tmp_path / "idx")


def test_index_asset_publishes_a_card_with_a_ci(styled_learned, tmp_path, capsys):
    import dagster as dg

    from music_pipeline.cli import main
    from music_pipeline.defs.assets.discovery import similarity_index
    from music_pipeline.defs.resources import MusicPipelineResource

    library, src = styled_learned
    data = tmp_path / "data"
    shutil.copytree(DataLayout(src).tables_dir, DataLayout(data).tables_dir)
    pipeline = MusicPipelineResource(data_dir=str(data), library_dir=str(library), workers=1)
    result = dg.materialize([similarity_index], resources={"pipeline": pipeline})
    assert result.success
    md = result.asset_materializations_for_node("similarity_index")[0].metadata
    card = md["model_card"].value
    est = card["estimate"]
    assert (
        card["feature_view"] == md["transform"].value
        and est["same_label_precision_at_5"] == md["label_precision_at_5"].value
    )
    assert est["ci95"][0] <= est["same_label_precision_at_5"] <= est["ci95"][1]
    assert main(["models", "--data", str(data), "--json"]) == 0
    cards = {c["name"]: c for c in json.loads(capsys.readouterr().out)["models"]}
    assert cards["similarity_index"]["built"] and cards["similarity_index"]["estimate"] == est
