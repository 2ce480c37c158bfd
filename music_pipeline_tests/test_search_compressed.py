"""The compressed approximate index (projection + IVF + float16/8-bit re-rank codes), its files,
and reading float32 rows on demand — on small synthetic vector sets with the approximate path
forced by a low ``approximate_above``."""

import json

import numpy as np
import pandas as pd
import pytest

from music_pipeline.artifacts import read_json, write_json
from music_pipeline.features.embedding import FEATURE_NAMES
from music_pipeline.search.ann import CODE_BYTES, Codes, code_candidates
from music_pipeline.search.exact import exact_topk, normalise, recall_at_k
from music_pipeline.search.index import INDEX_FORMAT, IndexNotBuilt, IndexParams, TrackIndex, VectorIndex
from music_pipeline.search.rows import NpyRows


def low_rank_library(n, d=160, latent=16, albums=150, seed=0):
    """Albums of tracks on a ``latent``-D space mapped into ``d`` dims plus a little noise: most
    of the energy lies in a few principal directions, as in the benchmark's library."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((albums, latent))
    mixing = rng.standard_normal((latent, d)) / np.sqrt(latent)

    def draw(m):
        z = centres[rng.integers(0, albums, m)] + 0.45 * rng.standard_normal((m, latent))
        return normalise(z @ mixing + 0.05 * rng.standard_normal((m, d)))

    return draw(n), draw(60)


@pytest.fixture(scope="module")
def compressed():
    db, queries = low_rank_library(4000)
    index = VectorIndex.build(db, IndexParams(approximate_above=1000, recall_sample=200))
    return db, queries, index


def test_compressed_index_meets_the_recall_floor_in_a_fraction_of_the_memory(compressed):
    db, queries, index = compressed
    st = index.ann_state
    assert index.approximate and index.codes is not None and st.codes in ("fp16", "sq8")
    # the codes are cheaper than the float32 vectors and the search holds no float32 vector
    assert st.code_dims < db.shape[1] and CODE_BYTES[st.codes] * st.code_dims <= 512
    assert not index.vectors_in_memory and index.memory_bytes < db.nbytes / 3
    # what the build measured, and a fresh measurement by brute force on queries it never saw
    assert st.recall_at_10 >= 0.97 and st.target_met and st.code_recall >= 0.985
    assert f"{st.codes}:{st.code_dims}" in st.codes_tried
    found, scores = index.search(queries, 10)
    truth, _ = exact_topk(db, queries, 10)
    assert recall_at_k(found, truth) >= 0.95
    # the returned scores are exact cosines, best first
    np.testing.assert_allclose(scores[0], db[found[0]] @ queries[0], rtol=1e-5)
    assert (np.diff(scores, axis=1) <= 0).all()


def test_float32_rerank_keeps_the_vectors_and_the_older_layout(compressed):
    db, queries, small = compressed
    full = VectorIndex.build(db, IndexParams(approximate_above=1000, recall_sample=200, rerank_codes="float32"))
    assert full.codes is None and full.ann_state.codes == "float32" and full.vectors_in_memory
    assert full.memory_bytes > db.nbytes > small.memory_bytes
    assert full.measure_recall(queries) >= 0.95
    with pytest.raises(ValueError, match="rerank_codes"):
        VectorIndex.build(db, IndexParams(approximate_above=1000, rerank_codes="float8"))


def test_a_budget_too_small_is_measured_and_reported_not_hidden():
    """Isotropic vectors have no few principal directions: 8 bytes a track cannot rank them, and
    the index says so (recall stored, target not met) instead of claiming the target."""
    db = normalise(np.random.default_rng(3).standard_normal((2500, 64)))
    index = VectorIndex.build(db, IndexParams(approximate_above=1000, recall_sample=150, rerank_max_bytes=8))
    st = index.ann_state
    assert (st.codes, st.code_dims) == ("sq8", 8) and list(st.codes_tried) == ["sq8:8"]
    assert st.recall_at_10 < 0.9 and not st.target_met


def test_code_candidates_are_cheapest_first_within_the_budget():
    cands = code_candidates(641, 512)
    cost = [CODE_BYTES[k] * r for k, r in cands]
    assert cost == sorted(cost) and max(cost) <= 512 and cands[:3] == [("sq8", 8), ("sq8", 12), ("fp16", 8)]
    assert ("sq8", 512) in cands and ("fp16", 256) in cands and ("fp16", 384) not in cands
    assert code_candidates(32, 10_000)[-1] == ("fp16", 32)  # never wider than the vectors
    assert code_candidates(641, 1) == [("sq8", 8)]  # nothing fits: the cheapest
    sample = np.random.default_rng(0).standard_normal((100, 4)).astype(np.float32)
    sq8 = Codes.fit("sq8", sample)
    decoded = sq8.decode(sq8.encode(sample))
    assert np.abs(decoded - sample).max() <= sq8.step.max() / 2 + 1e-6  # half a step at most inside the range


def test_compressed_index_round_trips_and_reads_rows_on_demand(compressed, tmp_path):
    db, queries, index = compressed
    state = json.loads(json.dumps(index.save(tmp_path)))  # as stored: JSON, no pickle
    assert {p.name for p in tmp_path.iterdir()} >= {"vectors.npy", "ivf.faiss", "ann.npz", "codes.npy"}
    assert np.load(tmp_path / "codes.npy", allow_pickle=False).shape == (len(db), index.codes.dims)
    loaded = VectorIndex.load(tmp_path, state)
    assert isinstance(loaded.vectors, NpyRows) and loaded.ann_state.nprobe == index.ann_state.nprobe
    assert loaded.memory_bytes == index.memory_bytes
    for a, b in zip(index.search(queries, 10), loaded.search(queries, 10), strict=True):
        np.testing.assert_array_equal(a, b)
    in_memory = VectorIndex.load(tmp_path, state, mmap=False)
    assert isinstance(in_memory.vectors, np.ndarray)
    np.testing.assert_array_equal(in_memory.search(queries[:5], 10)[0], loaded.search(queries[:5], 10)[0])
    # a faiss file that disagrees with the vectors is refused
    np.save(tmp_path / "codes.npy", np.asarray(index.codes.data[:-1]))
    with pytest.raises(ValueError, match="codes"):
        VectorIndex.load(tmp_path, state)


def test_added_vectors_are_coded_and_found(compressed, tmp_path):
    db, queries, built = compressed
    index = VectorIndex.load(tmp_path, built.save(tmp_path), mmap=False)
    positions = index.add(queries[:3])
    assert positions.tolist() == [len(db), len(db) + 1, len(db) + 2] and len(index.codes) == len(db) + 3
    idx, scores = index.search(queries[:3], 1)
    assert idx[:, 0].tolist() == positions.tolist() and np.allclose(scores[:, 0], 1.0, atol=1e-5)


def test_npy_rows_index_like_the_array(tmp_path):
    a = np.arange(60, dtype=np.float32).reshape(12, 5)
    np.save(tmp_path / "a.npy", a)
    rows = NpyRows(tmp_path / "a.npy")
    assert len(rows) == 12 and rows.shape == (12, 5) and rows.nbytes == a.nbytes
    mask = a[:, 0] % 3 == 0
    for key in (
        3,
        -1,
        slice(2, 9),
        slice(None, None, 4),
        slice(20, 30),
        np.array([7, 2, 2, 11]),
        [0, 1, 2],
        mask,
        (slice(1, 4), slice(0, 2)),
        np.array([], dtype=int),
    ):
        np.testing.assert_array_equal(rows[key], a[key])
    np.testing.assert_array_equal(np.asarray(rows, dtype=np.float64), a)
    with pytest.raises(IndexError):
        rows[np.array([12])]
    np.save(tmp_path / "b.npy", np.zeros(3))
    with pytest.raises(ValueError, match="2-D"):
        NpyRows(tmp_path / "b.npy")


def synthetic_table(n, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((6, len(FEATURE_NAMES)))
    album = rng.integers(0, 6, n)
    table = pd.DataFrame(base[album] + 0.3 * rng.standard_normal((n, len(FEATURE_NAMES))), columns=FEATURE_NAMES)
    table["key"] = [f"t{i:04d}" for i in range(n)]
    table["relpath"] = [f"a{g}/t{i}.wav" for i, g in enumerate(album)]
    table["label"] = [f"l{g % 2}" for g in album]
    table["group"] = [f"a{g}" for g in album]
    table["content_hash"] = [f"{i:040x}" for i in range(n)]
    table["tempo_bpm"] = 120.0
    table["rms_mean"] = 0.1
    return table


def test_saved_track_index_formats(tmp_path):
    """Format 2 loads; an exact index saved by format 1 (same files) still loads; an approximate
    format-1 index (no codes) is refused with a clear rebuild message."""
    table = synthetic_table(300)
    exact = TrackIndex.build(table, IndexParams(), transform="standardised")
    exact.save(tmp_path / "exact")
    assert read_json(tmp_path / "exact" / "index.json")["format"] == INDEX_FORMAT
    state = read_json(tmp_path / "exact" / "index.json")
    state["format"], state["params"]["ann_min_energy"] = 1, 0.9  # as format 1 wrote it
    write_json(tmp_path / "exact" / "index.json", state)
    old = TrackIndex.load(tmp_path / "exact")
    assert not old.index.approximate and len(old) == 300
    old.save(tmp_path / "exact")  # re-saved in the current format
    assert read_json(tmp_path / "exact" / "index.json")["format"] == INDEX_FORMAT

    ann = TrackIndex.build(table, IndexParams(approximate_above=100, nlist=8), transform="standardised")
    assert ann.index.codes is not None
    ann.save(tmp_path / "ann")
    again = TrackIndex.load(tmp_path / "ann")
    q = ann.index.vectors[:5]
    np.testing.assert_array_equal(again.index.search(q, 5)[0], ann.index.search(q, 5)[0])
    state = read_json(tmp_path / "ann" / "index.json")
    state["format"] = 1
    write_json(tmp_path / "ann" / "index.json", state)
    with pytest.raises(IndexNotBuilt, match="rebuild"):
        TrackIndex.load(tmp_path / "ann")
