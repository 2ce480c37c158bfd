"""Reports as HTML with one index page, and the closing summary of a build."""

import json
import os
import shutil
import time

import numpy as np
import pandas as pd
import pytest

from music_pipeline.layout import DataLayout
from music_pipeline.reports import write_reports
from music_pipeline.summary import collect, example_tracks, next_commands, query_string, summary_lines


def test_markdown_reports_become_html_pages_linked_from_one_index(tmp_path):
    data = tmp_path / "data"
    reports, plots = data / "reports", data / "plots"
    (plots / "genre").mkdir(parents=True)
    reports.mkdir()
    (reports / "genre_models.md").write_text(
        "# Genre models\n\n| model | acc |\n|---|---|\n| knn | 0.61 |\n\n<script>alert(1)</script>\n"
    )
    (reports / "embedding_map_2d.html").write_text("<html>map</html>")
    (plots / "genre" / "shap_bar.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    (plots / "label_similarity.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    index = write_reports(data)
    page = (reports / "genre_models.html").read_text()
    assert "<title>Genre models</title>" in page and "<td>knn</td>" in page and "<td>0.61</td>" in page
    assert "<script>" not in page and "&lt;script&gt;" in page  # raw HTML in a report is shown, not run
    html = index.read_text()
    for link in (
        'href="genre_models.html"',
        'href="embedding_map_2d.html"',
        'src="../plots/genre/shap_bar.png"',
        'src="../plots/label_similarity.png"',
    ):
        assert link in html, link
    assert "No embedding table yet" in html
    # a newer Markdown file is rendered again; an unchanged one is left alone
    before = os.stat(reports / "genre_models.html").st_mtime_ns
    write_reports(data)
    assert os.stat(reports / "genre_models.html").st_mtime_ns == before
    time.sleep(0.01)
    (reports / "genre_models.md").write_text("# Genre models\n\nretrained\n")
    write_reports(data)
    assert "retrained" in (reports / "genre_models.html").read_text()


def test_summary_reads_what_exists_and_tolerates_the_rest(styled_library, tmp_path):
    _, shared = styled_library
    data = tmp_path / "data"
    shutil.copytree(DataLayout(shared).tables_dir, DataLayout(data).tables_dir)
    emb = pd.read_parquet(DataLayout(data).embeddings_path)
    levels = pd.DataFrame(
        {
            "key": emb["key"],
            "relpath": emb["relpath"],
            "pdi": np.linspace(0.2, 0.8, len(emb)),
            "level": ["Easy", "Medium", "Hard"] * (len(emb) // 3),
        }
    )
    levels.to_parquet(DataLayout(data).tables_dir / "difficulty.parquet")
    (data / "models" / "genre").mkdir(parents=True)
    (data / "models" / "genre" / "status.json").write_text(
        json.dumps({"trained": False, "reason": "only 3 labelled tracks"})
    )
    (data / "models" / "difficulty").mkdir(parents=True)
    (data / "models" / "difficulty" / "difficulty_cnn_report.json").write_text("{not json")  # interrupted by hand
    s = collect(data)
    assert s.tracks == 24 and s.labels == {"arpeggio": 6, "drone": 6, "noise_rock": 6, "pulse": 6}
    assert s.difficulty["levels"] == {"Easy": 8, "Medium": 8, "Hard": 8}
    assert s.difficulty["pdi"]["min"] == pytest.approx(0.2) and s.difficulty["hardest"] == emb["relpath"].iloc[-1]
    assert any(n.startswith("difficulty CNN report: not read") for n in s.notes)
    text = "\n".join(summary_lines(s, "--data D"))
    assert "labels         arpeggio 6, drone 6, noise_rock 6, pulse 6" in text
    assert "genre          not trained: only 3 labelled tracks" in text
    assert "difficulty     Easy 8, Medium 8, Hard 8; PDI 0.20–0.80 (median 0.50)" in text
    assert next_commands(s, "--data D") == ["music-pipeline ui --data D"]  # no index yet: nothing to search


def test_example_tracks_are_typical_real_tracks_named_as_a_person_types_them():
    tracks = pd.DataFrame(
        {
            "key": list("abcd"),
            "relpath": ["rock/Song.ogg", "rock/Other.ogg", "jazz/Blue.ogg", "jazz/x/Song.ogg"],
            "label": ["rock", "rock", "jazz", "jazz"],
        }
    )
    v = np.array([[1.0, 0.1], [0.9, 0.3], [0.2, 1.0], [0.6, 0.8]])
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    ex = example_tracks(tracks, v)
    centre = v.mean(axis=0)
    assert ex[0] == query_string(tracks.relpath[int(np.argmax(v @ centre))], tracks.relpath.tolist())
    assert len(ex) == 2 and ex[0] != ex[1]
    assert query_string("jazz/Blue.ogg", tracks.relpath.tolist()) == "Blue"
    assert query_string("rock/Song.ogg", tracks.relpath.tolist()) == "rock/Song.ogg"  # two "Song"s: the path
    s = collect.__globals__["LibrarySummary"](data_dir=None, examples=["Song of mine", "Blue"])
    assert next_commands(s) == [
        "music-pipeline similar 'Song of mine' -n 5",
        "music-pipeline compare 'Song of mine' Blue",
        "music-pipeline radio 'Song of mine' --length 8",
    ]
