"""Discovery: the similarity index, MMR, radio, comparisons, the library API, assets and CLI."""

import io
import itertools
import json
import shutil

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from music_pipeline.artifacts import read_json, write_json
from music_pipeline.cli import main
from music_pipeline.defs.resources import MusicPipelineResource
from music_pipeline.features.embedding import FEATURE_NAMES
from music_pipeline.layout import DataLayout
from music_pipeline.search.discovery import Discovery, QueryError
from music_pipeline.search.exact import exact_topk, normalise, recall_at_k
from music_pipeline.search.index import IndexNotBuilt, IndexParams, TrackIndex, VectorIndex, sync_track_index
from music_pipeline.search.labels import label_similarity
from music_pipeline.search.mmr import mmr
from music_pipeline.search.radio import radio_walk
from music_pipeline.search.space import precision_at_k


def clustered(n, d=32, clusters=8, spread=0.25, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, d))
    labels = rng.integers(0, clusters, n)
    return normalise(centres[labels] + spread * rng.standard_normal((n, d))), labels


def brute_topk(db, q, k, exclude=None):
    s = db @ q
    if exclude is not None:
        s[exclude] = -np.inf
    return np.argsort(-s, kind="stable")[:k]


# -- pure core on synthetic vectors ------------------------------------------------------------
def test_mmr_lambda_one_equals_plain_top_n():
    rng = np.random.default_rng(1)
    cand = normalise(rng.standard_normal((40, 16)))
    rel = np.round(rng.random(40), 1)  # many ties: order must still match a stable sort
    order, _ = mmr(rel, cand, 10, 1.0)
    assert order.tolist() == np.argsort(-rel, kind="stable")[:10].tolist()


def test_mmr_skips_near_duplicate_of_chosen_track():
    q = np.array([1.0, 0.0, 0.0])
    a = normalise(np.array([np.cos(0.3), np.sin(0.3), 0.0]))  # most relevant
    a_dup = normalise(np.array([np.cos(0.3), np.sin(0.3), 0.001]))  # near-duplicate of a, next most relevant
    b = normalise(np.array([np.cos(0.301), -np.sin(0.301), 0.0]))  # a hair less relevant, on the other side
    cand = np.vstack([a, a_dup, b])
    rel = cand @ q
    assert mmr(rel, cand, 3, 1.0)[0].tolist() == [0, 1, 2]
    for lam in (0.0, 0.3, 0.5, 0.7, 0.9, 0.99):
        order, _ = mmr(rel, cand, 3, lam)
        assert order.tolist() == [0, 2, 1], lam  # the duplicate of the first pick comes last
    with pytest.raises(ValueError):
        mmr(rel, cand, 3, 1.5)


def test_exact_topk_in_small_blocks_matches_brute_force():
    db, _ = clustered(500, seed=2)
    queries = db[:7]
    idx, scores = exact_topk(db, queries, 10, block_elements=64, exclude=np.arange(7))
    for r in range(7):
        assert idx[r].tolist() == brute_topk(db, queries[r], 10, exclude=r).tolist()
        assert r not in idx[r]
        np.testing.assert_allclose(scores[r], db[idx[r]] @ queries[r], rtol=1e-5)
    small, _ = exact_topk(db[:3], queries[:1], 10)  # fewer rows than k: padded with -1
    assert (small[0, :3] >= 0).all() and (small[0, 3:] == -1).all()


def test_pruned_exact_search_equals_brute_force():
    from music_pipeline.search.exact import PrunedExact
    from music_pipeline.search.space import energy_rotation

    db, _ = clustered(3000, d=160, clusters=30, spread=0.3, seed=11)
    rotated = normalise(db @ energy_rotation(db))
    np.testing.assert_allclose(rotated[:50] @ rotated[50], db[:50] @ db[50], atol=1e-5)  # no cosine changes
    pruned = PrunedExact(rotated, head_dims=32)
    for r in range(20):
        idx, _scores, scored = pruned.search_one(rotated[r], 10, exclude=r)
        assert idx.tolist() == brute_topk(rotated, rotated[r], 10, exclude=r).tolist()
        assert scored < 3000 // 4  # most rows skipped on their bound alone
    # unrotated noise has no energy-ordered head: it falls back to a full pass, still exact
    noise = normalise(np.random.default_rng(12).standard_normal((500, 160)))
    idx, _, scored = PrunedExact(noise, head_dims=32).search_one(noise[0], 5)
    assert idx.tolist() == brute_topk(noise, noise[0], 5).tolist() and scored == 500
    index = VectorIndex.build(rotated, IndexParams(prune_above=1000, head_dims=32))
    assert (
        index.search(rotated[:3], 10, exclude=np.arange(3))[0].tolist()
        == exact_topk(rotated, rotated[:3], 10, exclude=np.arange(3))[0].tolist()
    )
    assert index._pruned is not None


def test_recall_at_k_is_the_overlap_fraction():
    exact = np.array([[1, 2, 3, 4], [5, 6, 7, 8]])
    approx = np.array([[4, 3, 9, 1], [8, 7, 6, 5]])
    assert recall_at_k(approx, exact) == pytest.approx((3 / 4 + 1) / 2)


def test_approximate_index_recall_is_measured_against_exact():
    db, _ = clustered(6000, seed=3)
    index = VectorIndex.build(db, IndexParams(approximate_above=1000, recall_sample=200))
    assert index.approximate and index.ann_state.recall_sample == 200
    assert index.ann_state.recall_at_10 >= 0.95
    # recompute the recall for fresh queries by brute force and compare with the index's own measure
    queries, _ = clustered(50, seed=4)
    approx, _ = index.search(queries, 10)
    manual = np.mean([len(set(a) & set(brute_topk(db, q, 10))) / 10 for a, q in zip(approx, queries, strict=True)])
    assert index.measure_recall(queries) == pytest.approx(manual)
    # scores returned by the approximate path are exact cosines of what it found
    np.testing.assert_allclose(index.search(queries[:1], 5)[1][0], db[approx[0][:5]] @ queries[0], rtol=1e-5)


@pytest.mark.parametrize("approximate_above", [10_000, 100])
def test_added_vector_is_found_without_rebuild(approximate_above):
    db, _ = clustered(800, seed=5)
    index = VectorIndex.build(db, IndexParams(approximate_above=approximate_above))
    ann_before = index.ann
    new = normalise(np.random.default_rng(6).standard_normal((1, db.shape[1])))
    (pos,) = index.add(new)
    assert pos == 800 and len(index) == 801 and index.ann is ann_before  # same faiss index, grown
    idx, scores = index.search(new, 3)
    assert idx[0, 0] == 800 and scores[0, 0] == pytest.approx(1.0, abs=1e-5)


def test_vector_index_save_load_round_trip(tmp_path):
    db, _ = clustered(1500, seed=7)
    index = VectorIndex.build(db, IndexParams(approximate_above=500))
    state = index.save(tmp_path)
    state = json.loads(json.dumps(state))  # as it is stored: JSON, no pickle
    loaded = VectorIndex.load(tmp_path, state)
    assert loaded.approximate and loaded.ann_state.nprobe == index.ann_state.nprobe
    np.testing.assert_array_equal(np.asarray(loaded.vectors), index.vectors)
    a, b = index.search(db[:20], 10), loaded.search(db[:20], 10)
    np.testing.assert_array_equal(a[0], b[0])


def test_radio_walk_never_repeats_and_respects_the_mask():
    db, _ = clustered(300, seed=8)
    allowed = np.zeros(300, dtype=bool)
    allowed[::3] = True  # 100 allowed tracks
    neighbours = lambda v, k: exact_topk(db, v, k)[0][0]
    pos, _scores = radio_walk(db, db[0], 30, allowed, exclude=[0], neighbours=neighbours, pool=5)
    assert len(pos) == 30 and len(set(pos.tolist())) == 30 and 0 not in pos
    assert allowed[pos].all()
    # more wanted than allowed: the walk ends when the allowed tracks run out, still no repeats
    pos, _ = radio_walk(db, db[0], 500, allowed, exclude=[0], neighbours=neighbours, pool=5)
    assert sorted(pos.tolist()) == [p for p in range(0, 300, 3) if p != 0]


def test_label_similarity_matches_pairwise_means():
    db, labels = clustered(60, clusters=3, seed=9)
    names = np.array([f"c{x}" for x in labels], dtype=object)
    names[0] = None  # unlabelled: left out
    table = label_similarity(db, names)
    sims = db @ db.T
    for row in table.itertuples():
        a = np.flatnonzero(names == row.label_a)
        b = np.flatnonzero(names == row.label_b)
        block = sims[np.ix_(a, b)]
        expected = (block.sum() - np.trace(block)) / (len(a) * (len(a) - 1)) if row.kind == "within" else block.mean()
        assert row.mean_cosine == pytest.approx(expected, abs=1e-6)
    within = table[table.kind == "within"].mean_cosine.mean()
    assert within > table[table.kind == "between"].mean_cosine.mean()


def test_precision_at_5_and_its_random_baseline():
    db, labels = clustered(200, clusters=4, spread=0.05, seed=10)
    res = precision_at_k(db, np.array(labels, dtype=object), 5)
    assert res["precision"] > 0.95 and 0.2 < res["baseline"] < 0.3 and res["queries"] == 200
    shuffled = np.random.default_rng(0).permutation(labels)
    assert precision_at_k(db, np.array(shuffled, dtype=object), 5)["precision"] < 0.5


# -- the library index on the styled library ---------------------------------------------------
@pytest.fixture(scope="module")
def discovery_data(styled_library, tmp_path_factory):
    """A private data dir (tables copied) with the similarity index built by the asset."""
    from music_pipeline.defs.assets.discovery import label_similarity as label_asset
    from music_pipeline.defs.assets.discovery import similarity_index

    library, shared = styled_library
    data = tmp_path_factory.mktemp("discovery") / "data"
    shutil.copytree(DataLayout(shared).tables_dir, DataLayout(data).tables_dir)
    pipeline = MusicPipelineResource(data_dir=str(data), library_dir=str(library), workers=1)
    result = dg.materialize([similarity_index, label_asset], resources={"pipeline": pipeline})
    assert result.success
    md = result.asset_materializations_for_node("similarity_index")[0].metadata
    return library, data, pipeline, md


def test_similarity_index_asset_metadata(discovery_data):
    _, data, _, md = discovery_data
    assert md["size"].value == 24 and md["search"].value.startswith("exact")
    # four distinct styles: neighbours share the label far more often than chance
    assert md["label_precision_at_5"].value >= 0.8 and md["label_precision_at_5_random"].value < 0.3
    assert md["index_memory_bytes"].value >= 24 * md["dim"].value * 4
    state = read_json(DataLayout(data).similarity_dir / "index.json")
    assert state["selection"]["chosen"] in state["selection"]["scores"]
    table = pd.read_parquet(DataLayout(data).tables_dir / "label_similarity.parquet")
    within = table[table.kind == "within"].mean_cosine.mean()
    assert within > table[table.kind == "between"].mean_cosine.mean()


def test_similar_never_returns_the_query(discovery_data):
    _, data, _, _ = discovery_data
    disc = Discovery.open(data)
    for key in disc.index.tracks["key"]:
        for diverse in (None, 0.5):
            _q, hits = disc.similar(key, 23, diverse)
            found = [h.track for h in hits]
            assert key not in found and len(found) == len(set(found)) == 23


def test_query_forms_resolve(discovery_data, tmp_path):
    library, data, _, _ = discovery_data
    disc = Discovery.open(data)
    row = disc.index.tracks.iloc[0]
    assert disc.resolve(row["key"]).position == 0
    assert disc.resolve(row["relpath"]).position == 0
    assert disc.resolve(str(library / row["relpath"])).position == 0
    assert disc.resolve("drone_03").relpath.startswith("drone/drone_03")
    with pytest.raises(QueryError, match="matches 6 tracks"):
        disc.resolve("drone")
    with pytest.raises(QueryError, match="no track matches"):
        disc.resolve("no such song")
    # a copy outside the library is the same audio: recognised, and excluded from its results
    copy = tmp_path / "copy.wav"
    shutil.copy(library / row["relpath"], copy)
    q, hits = disc.similar(str(copy), 5)
    assert q.position == 0 and row["key"] not in [h.track for h in hits]


def test_external_file_is_embedded_on_the_fly(discovery_data, tmp_path):
    import soundfile as sf

    from music_pipeline.synth import SR, styled_track

    _, data, _, _ = discovery_data
    disc = Discovery.open(data)
    path = tmp_path / "new_pulse.wav"
    sf.write(path, styled_track("pulse", 8.0, seed=999), SR)
    q, hits = disc.similar(str(path), 5)
    assert q.external and q.key is None and len(hits) == 5
    assert sum(h.label == "pulse" for h in hits) >= 3  # lands among its style


def test_track_added_to_the_index_is_found(discovery_data):
    _, data, _, _ = discovery_data
    index = TrackIndex.load(DataLayout(data).similarity_dir, mmap=False)
    table = pd.read_parquet(DataLayout(data).embeddings_path)
    new = table.iloc[[5]].copy()
    new["key"], new["relpath"], new["content_hash"] = "brand_new-00000000", "new/brand_new.wav", "f" * 32
    new[FEATURE_NAMES] = new[FEATURE_NAMES].to_numpy() * 1.01
    grown, mode = sync_track_index(index, pd.concat([table, new], ignore_index=True))
    assert mode == "incremental" and len(grown) == 25 and grown.info["added_since_fit"] == 1
    _q, hits = Discovery(grown).similar(table.iloc[5]["key"], 3)
    assert hits[0].track == "brand_new-00000000"
    # a removed track cannot be patched in: the index is rebuilt from the table
    rebuilt, mode = sync_track_index(grown, table.iloc[1:])
    assert mode == "rebuilt" and len(rebuilt) == 23


def test_track_index_save_load_round_trip(discovery_data, tmp_path):
    _, data, _, _ = discovery_data
    index = TrackIndex.load(DataLayout(data).similarity_dir)
    index.save(tmp_path / "copy")
    again = TrackIndex.load(tmp_path / "copy")
    np.testing.assert_array_equal(np.asarray(again.index.vectors), np.asarray(index.index.vectors))
    pd.testing.assert_frame_equal(again.tracks, index.tracks)
    raw = pd.read_parquet(DataLayout(data).embeddings_path)[FEATURE_NAMES].to_numpy()
    np.testing.assert_allclose(again.transform.project(raw), index.index.vectors, atol=1e-6)
    assert not list((tmp_path / "copy").glob("*.pkl"))
    with pytest.raises(IndexNotBuilt):
        TrackIndex.load(tmp_path / "nothing")


def test_harmonic_radio_steps_are_camelot_and_tempo_compatible(discovery_data):
    from music_pipeline.harmony.camelot import mixes_well, parse_key

    _, data, _, _ = discovery_data
    disc = Discovery.open(data)
    keys = disc.track_keys()
    assert all(k["camelot"] for k in keys)
    tempo = disc.index.tracks["tempo_bpm"].to_numpy()
    steps = 0
    for seed in range(len(keys)):
        _q, hits = disc.radio(disc.index.tracks["key"].iloc[seed], length=10, harmonic=True)
        chain = [(parse_key(keys[seed]["camelot"]), float(tempo[seed]))]
        chain += [(parse_key(h.extra["camelot"]), h.extra["tempo_bpm"]) for h in hits]
        assert all(mixes_well(a, ta, b, tb) for (a, ta), (b, tb) in itertools.pairwise(chain))
        assert all({"key", "camelot", "key_confidence"} <= set(h.as_dict()) for h in hits)
        steps += len(hits)
    assert steps > 0  # some walks do move


def test_harmonic_path_is_a_chain_of_compatible_steps(discovery_data):
    from music_pipeline.harmony.camelot import mixes_well, parse_key

    _, data, _, _ = discovery_data
    disc = Discovery.open(data)
    keys = disc.track_keys()
    tempo = disc.index.tracks["tempo_bpm"].to_numpy()
    n, steps = len(keys), 0
    for a, b in [(0, n - 1), (1, n // 2), (n // 3, 2)]:
        ka, kb = disc.index.tracks["key"].iloc[a], disc.index.tracks["key"].iloc[b]
        _qa, _qb, hits = disc.path(ka, kb, length=6, harmonic=True)
        chain = [(parse_key(keys[a]["camelot"]), float(tempo[a]))]
        chain += [(parse_key(h.extra["camelot"]), h.extra["tempo_bpm"]) for h in hits]
        assert all(mixes_well(x, tx, y, ty) for (x, tx), (y, ty) in itertools.pairwise(chain))
        assert {h.track for h in hits}.isdisjoint({ka, kb}) and len({h.track for h in hits}) == len(hits)
        if len(hits) == 6:  # a whole path: its last track mixes into B too
            assert mixes_well(*chain[-1], parse_key(keys[b]["camelot"]), float(tempo[b]))
        steps += len(hits)
    assert steps > 0
    _qa, _qb, plain = disc.path(disc.index.tracks["key"].iloc[0], disc.index.tracks["key"].iloc[n - 1], length=6)
    # every result carries its key (once per opened index, not only for --harmonic)
    by_track = dict(zip(disc.index.tracks["key"], keys, strict=True))
    assert plain and all(
        (h.extra["key"], h.extra["camelot"]) == (by_track[h.track]["key"], by_track[h.track]["camelot"]) for h in plain
    )


def test_radio_respects_bpm_window(discovery_data):
    _, data, _, _ = discovery_data
    disc = Discovery.open(data)
    tempo = disc.index.tracks["tempo_bpm"].to_numpy()
    target = float(np.median(tempo))
    window = np.abs(tempo - target) <= 15
    seed = disc.index.tracks["key"].iloc[0]
    _q, hits = disc.radio(seed, length=30, bpm=target, bpm_tolerance=15)
    keys = [h.track for h in hits]
    assert len(keys) == len(set(keys)) and seed not in keys
    assert all(abs(h.extra["tempo_bpm"] - target) <= 15 for h in hits)
    assert len(keys) == int(window.sum()) - int(window[0])  # every allowed track, then it stops


def test_compare_groups(discovery_data):
    _, data, _, _ = discovery_data
    disc = Discovery.open(data)
    keys = disc.index.tracks.set_index("relpath")["key"]
    _, _, same = disc.compare(keys["pulse/pulse_00.wav"], keys["pulse/pulse_00.wav"])
    assert same.cosine == pytest.approx(1.0, abs=1e-5) and same.agree == [
        "timbre",
        "harmony",
        "rhythm",
        "energy",
        "spectrum",
    ]
    _, _, other = disc.compare("pulse_00", "drone_01")
    assert other.cosine < 0.5 and other.differ and other.differences[0]["feature"] in FEATURE_NAMES


def test_index_checks(discovery_data):
    from music_pipeline.defs.assets.discovery import similarity_index_recall, similarity_index_size

    _, data, pipeline, _ = discovery_data
    assert similarity_index_size(pipeline=pipeline).passed
    assert similarity_index_recall(pipeline=pipeline).passed  # exact search
    # an approximate index whose recall fell below the threshold fails the check
    other = data.parent / "ann"
    shutil.copytree(DataLayout(data).tables_dir, DataLayout(other).tables_dir)
    index = TrackIndex.build(pd.read_parquet(DataLayout(other).embeddings_path), IndexParams(approximate_above=10))
    index.save(DataLayout(other).similarity_dir)
    ann_pipeline = MusicPipelineResource(data_dir=str(other), library_dir=pipeline.library_dir)
    good = similarity_index_recall(pipeline=ann_pipeline)
    assert good.passed and good.metadata["recall_at_10"].value >= 0.95
    # the index degrades (one IVF list probed of many) while its stored number still claims 0.99:
    # the check measures the search itself, so it fails, and its number is the measured one
    state = read_json(DataLayout(other).similarity_dir / "index.json")
    assert state["ann"]["nlist"] >= 8
    state["ann"]["nprobe"], state["ann"]["recall_at_10"] = 1, 0.99
    write_json(DataLayout(other).similarity_dir / "index.json", state)
    degraded = similarity_index_recall(pipeline=ann_pipeline)
    measured = degraded.metadata["recall_at_10"].value
    assert not degraded.passed and measured < 0.95 and degraded.metadata["recall_at_10_at_build"].value == 0.99
    from music_pipeline.search.evaluation import measure_index_recall

    assert measure_index_recall(TrackIndex.load(DataLayout(other).similarity_dir)) == (pytest.approx(measured), 24)
    pd.read_parquet(DataLayout(data).embeddings_path).iloc[:20].to_parquet(
        DataLayout(other).embeddings_path
    )  # table and index disagree
    assert not similarity_index_size(pipeline=ann_pipeline).passed


@pytest.mark.slow
def test_embedding_map_asset_writes_html_and_figures(discovery_data):
    from music_pipeline.defs.assets.discovery import embedding_map

    _, data, pipeline, _ = discovery_data
    layout = DataLayout(data)
    keys = pd.read_parquet(layout.embeddings_path)["key"]
    levels = pd.DataFrame(
        {"key": keys, "pdi": np.linspace(0, 1, len(keys)), "level": ["easy", "medium", "hard"] * (len(keys) // 3)}
    )
    levels.to_parquet(layout.difficulty_table_path)
    result = dg.materialize(
        [embedding_map],
        resources={"pipeline": pipeline},
        run_config={"ops": {"embedding_map": {"config": {"journey_track": "arpeggio_02"}}}},
    )
    assert result.success
    md = result.asset_materializations_for_node("embedding_map")[0].metadata
    html = (layout.reports_dir / "embedding_map_2d.html").read_text()
    assert (
        md["html_2d"].value == str(layout.reports_dir / "embedding_map_2d.html")
        and (layout.reports_dir / "embedding_map_3d.html").is_file()
    )
    assert "PDI level: hard" in html and "colour: PDI level" in html and 'src="plotly.min.js"' in html
    assert (layout.reports_dir / "plotly.min.js").stat().st_size > 1_000_000  # offline: no CDN
    assert (
        md["journey_track"].value == "arpeggio/arpeggio_02.ogg"
        and (layout.plots_dir / "embedding_journey.png").is_file()
    )
    coords = pd.read_parquet(layout.embedding_map_path)
    assert len(coords) == 24 and np.isfinite(coords[["x2", "y2", "x3", "y3", "z3"]].to_numpy()).all()


# -- the CLI -----------------------------------------------------------------------------------
def test_cli_json_outputs_parse(discovery_data, capsys):
    library, data, _, _ = discovery_data
    disc = Discovery.open(data)
    key = disc.index.tracks["key"].iloc[3]
    assert main(["similar", key, "-n", "4", "--json", "--data", str(data)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["query"]["track"] == key and len(out["results"]) == 4
    assert {"track", "path", "label", "score"} <= set(out["results"][0]) and key not in [
        r["track"] for r in out["results"]
    ]
    assert out["results"][0]["path"].startswith(str(library))

    assert main(["similar", key, "-n", "4", "--diverse", "0.6", "--json", "--data", str(data)]) == 0
    assert len(json.loads(capsys.readouterr().out)["results"]) == 4

    assert main(["compare", "pulse_01", "arpeggio_02", "--json", "--data", str(data)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [g["group"] for g in out["groups"]] == ["timbre", "harmony", "rhythm", "energy", "spectrum"]
    _, _, direct = disc.compare("pulse_01", "arpeggio_02")
    assert (
        out["cosine"] == pytest.approx(direct.cosine)
        and out["verdict"] == direct.verdict
        and out["summary"] == direct.summary
    )

    assert main(["radio", key, "--length", "5", "--json", "--data", str(data)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["results"]) == 5 and len({r["track"] for r in out["results"]}) == 5

    assert main(["similar", "drone", "--json", "--data", str(data)]) == 2  # ambiguous
    captured = capsys.readouterr()
    assert "matches 6 tracks" in captured.err and "error" in json.loads(captured.out)


def test_cli_without_index_says_how_to_build(tmp_path, capsys):
    assert main(["similar", "x", "--data", str(tmp_path)]) == 2
    assert "no similarity index" in capsys.readouterr().err


def test_explore_reads_queries_until_quit(discovery_data, capsys, monkeypatch):
    _, data, _, _ = discovery_data
    monkeypatch.setattr(
        "sys.stdin", io.StringIO("arpeggio_04\n2\nn 2\nnonsense words\ncompare pulse_00 | drone_00\nquit\nnever read\n")
    )
    assert main(["explore", "-n", "3", "--data", str(data)]) == 0
    captured = capsys.readouterr()
    assert captured.out.count("Most similar to") == 2 and "cosine similarity" in captured.out
    assert "no track matches 'nonsense words'" in captured.err and "never read" not in captured.out


def test_explore_tells_bad_syntax_unknown_tracks_and_missing_files_apart(discovery_data, capsys, monkeypatch):
    """Issue 12: every prompt setting is checked where it is typed; a setting that was refused
    leaves the session as it was (searches still work afterwards)."""
    _, data, _, _ = discovery_data
    lines = [
        "99",
        "diverse 7",
        "n abc",
        "n 0",
        "compare pulse_00 drone_00",
        "compare pulse_00 |",
        "radio",
        "arpeggio_04",
        "99",
        "/missing/song.wav",
        "nonsense words",
        "diverse 0.5",
        "n 2",
        "pulse_01",
        "quit",
    ]
    monkeypatch.setattr("sys.stdin", io.StringIO("\n".join(lines) + "\n"))
    assert main(["explore", "-n", "3", "--data", str(data)]) == 0
    out, err = capsys.readouterr()
    errors = err.strip().splitlines()
    assert errors[0] == "usage: no results to pick 99 from yet: search for a track first"
    assert errors[1] == "usage: diverse takes λ between 0 and 1, or off, got '7' (e.g. diverse 0.7)"
    assert errors[2] == "usage: n takes a whole number ≥ 1, got 'abc' (e.g. n 20)"
    assert errors[3] == "usage: n takes a whole number ≥ 1, got '0' (e.g. n 20)"
    assert errors[4] == errors[5] == "usage: compare takes two tracks separated by |: compare A | B"
    assert errors[6] == "usage: radio takes a track: radio TRACK"
    assert errors[7] == "usage: there is no result 99: the last list has 3 (and no track matches '99')"
    assert errors[8] == "error: /missing/song.wav: file does not exist (and no track of the library has that path)"
    assert errors[9].startswith("error: no track matches 'nonsense words'")
    assert len(errors) == 10
    assert (
        "Most similar to arpeggio/arpeggio_04.flac" in out
        and "Diverse picks (MMR λ=0.5) like pulse/pulse_01.flac" in out
    )
    last = out.split("Diverse picks")[-1].strip().splitlines()
    assert len(last) == 1 + 2  # the heading and n = 2 results: the refused "n 0" changed nothing


def test_similar_says_a_missing_file_is_missing(discovery_data, capsys, tmp_path):
    _, data, _, _ = discovery_data
    assert main(["similar", str(tmp_path / "gone.mp3"), "--data", str(data)]) == 2
    assert f"{tmp_path / 'gone.mp3'}: file does not exist" in capsys.readouterr().err
    assert main(["similar", "no such title", "--data", str(data)]) == 2
    assert "no track matches 'no such title'" in capsys.readouterr().err


def _comparison(overall_pct, group_pcts, cosine=-0.33):
    from music_pipeline.search.compare import Comparison, GroupAgreement, _verdict
    from music_pipeline.search.space import GROUPS

    groups = [
        GroupAgreement(
            g, 10, (p - 50) / 60 if p is not None else c, p, _verdict((p - 50) / 60 if p is not None else c, p)
        )
        for g, p, c in zip(GROUPS, group_pcts, [cosine] * len(GROUPS), strict=True)
    ]
    return Comparison(cosine, overall_pct, groups)


def test_compare_verdict_follows_its_numbers():
    """Issue 12: cosine −0.33 at the 20th percentile was printed with "differ: none". The
    overall verdict uses the same rule as the groups, and the sentence names the groups that
    pull the pair apart even when none crosses the threshold on its own."""
    c = _comparison(20, [40, 60, 55, 30, 45])
    assert c.verdict == "differ" and c.differ == []
    assert c.summary.startswith(
        "More different than most pairs of this library: no group differs strongly on its own; furthest apart in energy (p30), timbre (p40)"
    )
    typical = _comparison(40, [40, 60, 55, 30, 45])
    assert typical.verdict == "neutral" and "no feature group stands out" in typical.summary
    alike = _comparison(90, [80, 60, 10, 70, 75])
    assert (
        alike.verdict == "agree"
        and alike.summary
        == "More alike than most pairs of this library: agree in timbre (p80), spectrum (p75); yet they differ in rhythm (p10)"
    )
    # printed percentiles and verdicts agree at the thresholds (74.6 prints as p75 and agrees)
    assert _comparison(74.6, [74.6, 25.4, 50, 50, 50]).verdict == "agree"
    assert [g.verdict for g in _comparison(50, [74.6, 25.4, 50, 50, 50]).groups][:2] == ["agree", "differ"]
    # without a library reference (no pair quantiles) a negative cosine differs
    plain = _comparison(None, [None] * 5, cosine=-0.33)
    assert plain.verdict == "differ" and plain.summary.startswith("More different")
    import json

    assert json.loads(json.dumps(c.as_dict()))["verdict"] == "differ"


def test_compare_sentence_never_contradicts_the_verdict():
    rng = np.random.default_rng(0)
    for _ in range(300):
        pcts = list(rng.uniform(0, 100, 5))
        c = _comparison(float(rng.uniform(0, 100)), pcts)
        first = c.summary.split(":")[0]
        assert (
            first
            == {
                "differ": "More different than most pairs of this library",
                "agree": "More alike than most pairs of this library",
                "neutral": "A typical pair of this library",
            }[c.verdict]
        )
        assert "none" not in c.summary
