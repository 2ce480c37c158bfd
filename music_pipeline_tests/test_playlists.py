"""Playlists: grouping by sound, k by the variance explained, names from tags/tempo/level, the
order, files, the CLI (synthetic embeddings with a known group structure; no audio needed)."""

import json

import numpy as np
import pandas as pd
import pytest

from music_pipeline.artifacts import write_parquet
from music_pipeline.cli import main
from music_pipeline.features.embedding import FEATURE_NAMES
from music_pipeline.layout import DataLayout
from music_pipeline.learned.store import LEARNED_NAMES, TAG_NAMES, TAG_TEXT
from music_pipeline.playlists import clusters
from music_pipeline.playlists.clusters import MISFIT_SHARE, misfits
from music_pipeline.playlists.describe import describe_groups, sequence, tag_scores
from music_pipeline.playlists.library import (
    MISFIT_REASON,
    load_playlists,
    make_playlists,
    public_json,
    save_playlists,
)

GROUP_TAGS = ["ambient", "techno", "guitar", "piano", "strings"]  # the tag each synthetic source is strong in


def _tag_column(text: str) -> int:
    return next(i for i, n in enumerate(TAG_NAMES) if TAG_TEXT[n] == text)


def library_table(per_group=(12, 10, 9, 14, 8), seed=0):
    """Tracks of len(per_group) sources: each source a region of the learned space, a tag it is
    strong in and a tempo; names that say nothing (no source in them)."""
    rng = np.random.default_rng(seed)
    dims = len(LEARNED_NAMES) + len(FEATURE_NAMES)
    centres = rng.standard_normal((len(per_group), dims)) * 1.2  # 5 groups explain just over half the variance
    rows, groups = [], []
    for g, n in enumerate(per_group):
        for _ in range(n):
            values = centres[g] + rng.standard_normal(dims)
            tags = rng.uniform(0.0, 0.2, len(TAG_NAMES))
            tags[_tag_column(GROUP_TAGS[g])] += 0.6
            rows.append((values, tags, 70.0 + 25 * g + rng.normal(0, 3)))
            groups.append(g)
    order = rng.permutation(len(rows))
    t = pd.DataFrame(
        {
            "key": [f"t{i:03d}-abcdef12" for i in range(len(rows))],
            "relpath": [f"track {i:03d}.ogg" for i in range(len(rows))],
            "duration_s": 60.0,
            "tempo_bpm": [rows[j][2] for j in order],
        }
    )
    values = pd.DataFrame(np.vstack([rows[j][0] for j in order]), columns=LEARNED_NAMES + FEATURE_NAMES)
    tags = pd.DataFrame(np.vstack([rows[j][1] for j in order]), columns=TAG_NAMES)
    values["tempo_bpm"] = t["tempo_bpm"]
    return pd.concat([t.drop(columns="tempo_bpm"), values, tags], axis=1), np.array(groups)[order]


def blocks(table):
    return [table[LEARNED_NAMES].to_numpy(), table[FEATURE_NAMES].to_numpy()]


def test_the_default_groups_find_the_sources():
    from sklearn.metrics import adjusted_mutual_info_score

    table, groups = library_table()
    c = clusters.cluster(blocks(table))
    assert c.k == 5 and c.k_rule == "variance" and c.method == "ward"
    assert adjusted_mutual_info_score(groups, c.labels) > 0.9
    assert np.bincount(c.labels).tolist() == sorted(np.bincount(c.labels).tolist(), reverse=True)
    assert set(c.scores) == set(clusters.k_range(len(table)))
    assert c.scores[4] < clusters.VARIANCE_EXPLAINED <= c.scores[5]
    again = clusters.cluster(blocks(table))
    assert (again.labels == c.labels).all()  # fixed seed: the same groups


def test_every_k_rule_and_method_runs_and_a_fixed_k_is_kept():
    table, _ = library_table(per_group=(8, 8, 8))
    x = blocks(table)
    for method in clusters.METHODS:
        for rule in clusters.K_RULES:
            c = clusters.cluster(x, method, rule)
            assert c.k in clusters.k_range(len(table)) and len(np.unique(c.labels)) == c.k
    assert clusters.cluster(x, "kmeans", k=4).k == 4
    with pytest.raises(ValueError, match="unknown k rule"):
        clusters.choose_k(x[0], "elbow")


def test_sample_fit_assigns_the_rest(monkeypatch):
    table, groups = library_table(per_group=(20, 20, 20))
    monkeypatch.setattr(clusters, "FIT_ROWS", 30)
    c = clusters.cluster(blocks(table), k=3)
    from sklearn.metrics import adjusted_mutual_info_score

    assert len(c.labels) == 60 and adjusted_mutual_info_score(groups, c.labels) > 0.9


def test_names_come_from_tags_tempo_and_level_and_are_distinct():
    table, groups = library_table()
    z, names = tag_scores(table[TAG_NAMES].to_numpy(), [TAG_TEXT[n] for n in TAG_NAMES])
    assert "electronic" in names and "electronica" not in names and "80s" not in names
    levels = ["Hard" if g == 4 else "Medium" for g in groups]
    d = describe_groups(groups, z, names, table["tempo_bpm"].to_numpy(), levels)
    assert len({x.name for x in d}) == len(d) and all(x.name for x in d)
    for g, x in enumerate(d):
        assert GROUP_TAGS[g] in x.name and GROUP_TAGS[g] in x.why
    assert d[0].name.startswith("slow ") and d[4].name.startswith("fast ") and d[4].name.endswith(", hard")
    assert "medium" not in " ".join(x.name for x in d)
    # two groups with the same leading tags get different names
    twins = describe_groups(np.array([0, 0, 1, 1]), np.array([[2, 1, 0.5], [2, 1, 0.1], [2, 1, 0.1], [2, 1, 0.6]]),
                            ["ambient", "piano", "harp"], np.full(4, np.nan), [None] * 4)  # fmt: skip
    assert twins[0].name != twins[1].name


def test_sequence_walks_neighbour_to_neighbour():
    rng = np.random.default_rng(1)
    angles = np.sort(rng.uniform(0, 2.5, 30))
    shuffled = rng.permutation(30)
    v = np.c_[np.cos(angles), np.sin(angles)][shuffled]
    walked = angles[shuffled][sequence(v)]
    assert (np.diff(walked) > 0).all() or (np.diff(walked) < 0).all()  # along the arc, end to end
    assert sorted(sequence(v).tolist()) == list(range(30))


def test_library_playlists_files_and_cli(tmp_path, capsys):
    from sklearn.metrics import adjusted_mutual_info_score

    table, groups = library_table()
    table.loc[3, LEARNED_NAMES[0]] = np.nan  # one track the network could not analyse
    data = tmp_path / "data"
    layout = DataLayout(data)
    write_parquet(layout.embeddings_path, table[["key", "relpath", "duration_s", *FEATURE_NAMES]])
    write_parquet(layout.learned_table_path, table[["key", *LEARNED_NAMES, *TAG_NAMES]])
    write_parquet(layout.difficulty_table_path, pd.DataFrame({"key": table["key"], "level": "Easy"}))

    assert main(["playlists", "--data", str(data), "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    lists = answer["playlists"]
    assert len(lists) == 5 and len({p["name"] for p in lists}) == 5
    assert all(p["name"].endswith(", easy") and p["why"] for p in lists)
    first = {t["track"]: i for i, p in reversed(list(enumerate(lists))) for t in p["tracks"]}
    misfit = [t for t in answer["left_out"][1:] if t["reason"] == MISFIT_REASON]
    assert answer["left_out"][0]["track"] == table["key"][3] and len(misfit) == len(answer["left_out"]) - 1
    assert len(misfit) == int(MISFIT_SHARE * (len(table) - 1)) and answer["clustering"]["misfits"] == len(misfit)
    assert len(first) == len(table) - 1 - len(misfit) and not {t["track"] for t in misfit} & set(first)
    keys = table["key"].tolist()
    assigned = [first[k] for k in keys if k in first]
    truth = [g for k, g in zip(keys, groups, strict=True) if k in first]
    assert adjusted_mutual_info_score(truth, assigned) > 0.9
    assert all(t["path"].endswith(".ogg") for p in lists for t in p["tracks"])

    saved = load_playlists(data)
    m3u = (layout.playlists_dir / saved["playlists"][0]["files"]["m3u8"]).read_text()
    assert m3u.startswith("#EXTM3U") and m3u.count("#EXTINF") == len(lists[0]["tracks"])
    assert (layout.playlists_dir / saved["playlists"][0]["files"]["xspf"]).is_file()
    assert set(pd.read_parquet(layout.playlist_tracks_path)["key"]) == set(first)

    # fewer playlists next time: the old files go
    fewer = make_playlists(table.iloc[:12], None, "/music")
    save_playlists(fewer, data)
    files = sorted(p.name for p in layout.playlists_dir.iterdir() if p.suffix in (".m3u8", ".xspf"))
    assert len(files) == 2 * len(fewer.playlists)
    assert public_json(load_playlists(data))["playlists"][0]["tracks"][0]["path"].startswith("/music/")

    assert main(["playlists", "--data", str(data)]) == 0
    text = capsys.readouterr().out
    assert "playlists of 11 tracks" in text and "why:" in text

    from music_pipeline.summary import collect, summary_lines

    closing = "\n".join(summary_lines(collect(data)))
    assert f"playlists      {len(fewer.playlists)} by sound: {fewer.playlists[0]['name']}" in closing


def test_a_track_like_no_group_is_listed_apart_not_forced_into_a_playlist():
    rng = np.random.default_rng(5)
    centres = rng.normal(size=(4, 8)) * 6
    labels = np.repeat(np.arange(4), 10)
    vectors = centres[labels] + rng.normal(size=(40, 8))
    vectors[7] = centres[0] + 9  # far from its own group's centre
    apart = misfits(vectors, labels)
    assert apart[7] and apart.sum() == int(MISFIT_SHARE * 40)
    pair = misfits(vectors[:2], labels[:2], share=0.5)  # never below MIN_MEMBERS in a group
    assert not pair.any()


def test_a_small_library_gets_one_playlist_and_bad_rows_are_left_out():
    table, _ = library_table(per_group=(3, 3))
    table.loc[1, FEATURE_NAMES[5]] = np.inf
    result = make_playlists(table)
    assert len(result.playlists) == 1 and len(result.playlists[0]["tracks"]) == 5
    assert result.clustering["k"] == 1 and "too few" in result.clustering["reason"]
    assert [t["reason"].split(" (")[0] for t in result.left_out] == ["features not finite"]


def test_cli_without_a_build_says_so(tmp_path, capsys):
    assert main(["playlists", "--data", str(tmp_path / "empty")]) == 2
    assert "build the library first" in capsys.readouterr().err
