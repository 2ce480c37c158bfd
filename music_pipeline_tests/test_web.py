"""Issue 13: the explorer's API, audio and playlists over real HTTP (uvicorn on 127.0.0.1)."""

from __future__ import annotations

import http.client
import io
import json
import os
import socket
import urllib.parse
from pathlib import Path
from xml.etree import ElementTree as ET

import numpy as np
import pytest
import soundfile as sf

from .system import free_port
from .web_library import AIFF_RELPATH, ThreadServer, explorer_library


@pytest.fixture(scope="module")
def built(styled_library, tmp_path_factory):
    return explorer_library(styled_library, tmp_path_factory.mktemp("web"))


@pytest.fixture(scope="module")
def served(built):
    from music_pipeline.web.app import create_app
    from music_pipeline.web.explorer import LiveExplorer
    from music_pipeline.web.status import clear_status, write_status

    library, data = built
    live = LiveExplorer(data)
    holder = {}
    app = create_app(
        live, public_url=None, on_start=lambda: write_status(data, holder["url"]), on_stop=lambda: clear_status(data)
    )
    server = ThreadServer(app)
    holder["url"] = server.url
    with server:
        yield {"library": library, "data": data, "url": server.url, "port": server.port, "explorer": live.current}


def get(served, path: str, headers: dict | None = None, method: str = "GET"):
    conn = http.client.HTTPConnection("127.0.0.1", served["port"], timeout=60)
    conn.request(method, path, headers=headers or {})
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    return resp.status, {k.lower(): v for k, v in resp.getheaders()}, body


def get_json(served, path: str, status: int = 200):
    code, headers, body = get(served, path)
    assert code == status, (path, code, body[:300])
    assert headers["content-type"].startswith("application/json")
    return json.loads(body)


def key_of(served, relpath: str) -> str:
    t = served["explorer"].tracks
    return t.loc[t["relpath"] == relpath, "key"].item()


def cli_json(capsys, *argv) -> dict:
    from music_pipeline.cli import main

    assert main(list(argv)) == 0
    return json.loads(capsys.readouterr().out)


# -- the API --------------------------------------------------------------------------------------
def test_search_as_you_type_finds_titles_labels_and_keys(served):
    got = get_json(served, "/api/search?q=drone_0")
    assert [r["relpath"] for r in got["results"]][:1] == ["drone/drone_00.wav"]  # title prefix first
    assert all("drone_0" in r["title"] for r in got["results"])
    by_label = get_json(served, "/api/search?q=pulse&limit=50")["results"]
    assert len(by_label) == 7 and {r["label"] for r in by_label} == {"pulse"}  # 6 + the AIFF probe
    key = by_label[0]["track"]
    assert get_json(served, f"/api/search?q={key.upper()}")["results"][0]["track"] == key
    assert get_json(served, "/api/search?q=")["results"] == []
    assert get_json(served, "/api/search?q=no-such-track")["results"] == []
    r = by_label[0]
    assert r["path"] == str(served["library"] / r["relpath"]) and r["level"] in ("Easy", "Medium", "Hard")


def test_similar_radio_compare_answer_with_the_clis_json(served, capsys):
    data = str(served["data"])
    key = key_of(served, "pulse/pulse_01.flac")
    api = get_json(served, f"/api/similar?track={key}&n=5")
    assert len(api["results"]) == 5 and all(isinstance(r["score"], float) for r in api["results"])
    assert api["results"][0]["score"] >= api["results"][-1]["score"] and key not in {r["track"] for r in api["results"]}
    assert api == cli_json(capsys, "similar", key, "-n", "5", "--json", "--data", data)

    api = get_json(served, f"/api/similar?track={key}&n=4&diverse=0.7")
    assert api == cli_json(capsys, "similar", key, "-n", "4", "--diverse", "0.7", "--json", "--data", data)

    api = get_json(served, f"/api/radio?seed={key}&length=6&bpm=128&bpm_tolerance=10")
    assert api == cli_json(
        capsys, "radio", key, "--length", "6", "--bpm", "128", "--bpm-tolerance", "10", "--json", "--data", data
    )
    assert api["results"] and all(abs(r["tempo_bpm"] - 128) <= 10 for r in api["results"])

    other = key_of(served, "drone/drone_00.wav")
    api = get_json(served, f"/api/compare?a={key}&b={other}")
    assert api == cli_json(capsys, "compare", key, other, "--json", "--data", data)
    assert {g["group"] for g in api["groups"]} == {"timbre", "harmony", "rhythm", "energy", "spectrum"}


def test_track_page_has_genre_difficulty_neighbours_and_map_point(served):
    key = key_of(served, "drone/drone_03.wav")
    t = get_json(served, f"/api/track/{urllib.parse.quote(key)}")
    assert (
        t["track"]["track"] == key
        and t["track"]["title"] == "drone_03"
        and t["track"]["duration_s"] == pytest.approx(12.0, abs=0.1)
    )
    assert len(t["similar"]["results"]) == 5 and len(t["diverse"]["results"]) == 5 and t["diverse"]["diverse"] == 0.7
    from music_pipeline.harmony.library import library_keys

    mk, row = t["music_key"], library_keys(served["data"]).set_index("key").loc[key]  # as `key` reports it
    assert (mk["key"], mk["camelot"]) == (row["music_key"], row["camelot"])
    assert mk["confidence"] == pytest.approx(row["key_confidence"], abs=0.002)
    g = t["genre"]
    assert g["available"] and set(g["probabilities"]) == {"pulse", "drone", "arpeggio", "noise_rock"}
    assert sum(g["probabilities"].values()) == pytest.approx(1.0) and g["label"] == max(
        g["probabilities"], key=g["probabilities"].get
    )
    assert g["explanation"]["text"].startswith(f"Predicted {g['label']}") and g["explanation"]["components"]
    assert any("in-sample" in n for n in g["notes"])  # its label was in the training data, and it says so
    d = t["difficulty"]
    from music_pipeline.artifacts import read_parquet
    from music_pipeline.layout import DataLayout

    row = read_parquet(DataLayout(served["data"]).difficulty_table_path).set_index("key").loc[key]
    assert d["available"] and d["pdi"] == pytest.approx(row["pdi"], abs=1e-9) and d["level"] == row["level"]
    assert len(d["reasons"]) == 3 and all(("harder" in r) != ("easier" in r) for r in d["reasons"])
    assert (
        "notes/s" in d["explanation"] and f"→ {d['level']} (sounded like" in d["explanation"]
    )  # the notes, in musical terms
    assert d["heard"]["family"] in d["explanation"] or d["heard"]["family_label"] in d["explanation"]
    assert f"confidence {d['heard']['reading_confidence']:.2f})" in d["explanation"]  # derived again from the table
    assert set(t["map"]) == {"x", "y"}


def test_track_page_versions_route_names_what_is_missing(served):
    # this library was built without a scan table: the versions section says so instead of failing
    key = key_of(served, "drone/drone_03.wav")
    v = get_json(served, f"/api/versions/{urllib.parse.quote(key)}")
    assert v["available"] is False and "music-pipeline build" in v["reason"] and v["results"] == []
    assert "no track with key" in get_json(served, "/api/versions/no-such-key", 404)["error"]


def test_unknown_and_bad_queries_get_one_line_404_or_422(served):
    cases = [
        ("/api/similar?track=no-such-track", 404, "no track matches"),
        ("/api/track/no-such-key", 404, "no track with key"),
        ("/api/similar?track=pulse&n=5", 422, "matches 7 tracks"),  # ambiguous: which pulse?
        ("/api/similar?n=5", 422, "missing parameter track"),
        ("/api/similar?track=pulse_01&n=abc", 422, "n must be an integer"),
        ("/api/similar?track=pulse_01&n=0", 422, "n must be between 1 and 100"),
        ("/api/similar?track=pulse_01&diverse=1.5", 422, "diverse must be between 0"),
        ("/api/radio?seed=pulse_01&energy=nan", 422, "energy must be between"),
        ("/api/path?from=pulse_01&to=pulse_01", 422, "same track"),
        ("/api/radio?seed=pulse_01&harmonic=maybe", 422, "harmonic must be 1 or 0"),
        ("/api/radio.m3u8?seed=nothing-like-this", 404, "no track matches"),
        ("/api/nothing", 404, "no such page"),
    ]
    for path, status, text in cases:
        body = get_json(served, path, status)
        assert set(body) == {"error"} and text in body["error"] and "\n" not in body["error"], (path, body)
    code, _, body = get(served, "/api/similar?track=pulse_01", method="POST")
    assert code == 405 and "read-only" in json.loads(body)["error"]
    code, _, _ = get(served, "/api/info", headers={"Host": "attacker.example"})
    assert code == 400  # bound to loopback: a page on another origin cannot rebind its name to us


def test_a_file_path_in_a_query_never_reaches_the_file_system(served, tmp_path):
    outside = tmp_path / "outside.wav"
    sf.write(outside, np.zeros(22050 * 4, dtype=np.float32) + 0.1, 22050)
    body = get_json(served, f"/api/similar?track={urllib.parse.quote(str(outside))}", 404)
    assert "no track matches" in body["error"]  # the CLI would embed it; the server does not look


# -- audio ----------------------------------------------------------------------------------------
def test_audio_serves_library_files_with_range(served):
    rel = "drone/drone_01.flac"
    raw = (served["library"] / rel).read_bytes()
    key = key_of(served, rel)
    code, h, body = get(served, f"/audio/{key}")
    assert code == 200 and h["content-type"] == "audio/flac" and body == raw and h["accept-ranges"] == "bytes"
    code, h, body = get(served, f"/audio/{key}", {"Range": "bytes=100-1099"})
    assert code == 206 and body == raw[100:1100] and h["content-range"] == f"bytes 100-1099/{len(raw)}"
    code, h, body = get(served, f"/audio/{key}", {"Range": "bytes=-64"})
    assert code == 206 and body == raw[-64:]
    ogg = key_of(served, "drone/drone_02.ogg")
    assert get(served, f"/audio/{ogg}", method="HEAD")[1]["content-type"] == "audio/ogg"


def test_aiff_is_transcoded_to_wav_with_exact_ranges(served):
    key = key_of(served, AIFF_RELPATH)
    source, sr = sf.read(served["library"] / AIFF_RELPATH, dtype="int16")
    code, h, whole = get(served, f"/audio/{key}")
    assert code == 200 and h["content-type"] == "audio/wav" and h["x-transcoded-from"] == "aiff"
    assert int(h["content-length"]) == len(whole) == 44 + source.size * 2
    decoded, sr2 = sf.read(io.BytesIO(whole), dtype="int16")
    assert sr2 == sr and decoded.shape == source.shape and np.array_equal(decoded, source)
    for rng, (a, b) in {
        "bytes=0-99": (0, 100),
        "bytes=40-5000": (40, 5001),
        "bytes=123457-": (123457, len(whole)),
        "bytes=-10": (len(whole) - 10, len(whole)),
    }.items():
        code, h, part = get(served, f"/audio/{key}", {"Range": rng})
        assert code == 206 and part == whole[a:b] and h["content-range"] == f"bytes {a}-{b - 1}/{len(whole)}", rng
    code, _, body = get(served, f"/audio/{key}", {"Range": f"bytes={len(whole)}-"})
    assert code == 416 and "outside" in json.loads(body)["error"]
    code, h, body = get(served, f"/audio/{key}", method="HEAD")
    assert code == 200 and body == b"" and int(h["content-length"]) == len(whole)


def test_audio_only_serves_library_files_by_key(served, built):
    from music_pipeline.web.explorer import Explorer, NotFound

    for path in (
        "/audio/..%2F..%2F..%2Fetc%2Fpasswd",
        "/audio/%2Fetc%2Fpasswd",
        "/audio/../../etc/passwd",
        "/static/..%2F..%2Fapp.py",
        "/audio/" + "x" * 300,
    ):
        code, _, body = get(served, path)
        assert code == 404 and b"root:" not in body and b"import" not in body, path
        # refused by the key lookup (or the router), not by a file read that happened to fail
        assert json.loads(body)["error"].startswith(("no track with key", "no such page")), (path, body)
    # even a tampered index cannot point the server outside the library folder
    ex = Explorer(built[1])
    ex.tracks.loc[0, "relpath"] = "../../../../etc/passwd"
    with pytest.raises(NotFound, match="not inside the library"):
        ex.audio_file(ex.tracks["key"].iloc[0])


# -- playlists and the path -----------------------------------------------------------------------
def test_radio_m3u8_and_xspf_list_absolute_library_paths(served):
    key = key_of(served, "arpeggio/arpeggio_03.wav")
    code, h, body = get(served, f"/api/radio.m3u8?seed={key}&length=5")
    assert code == 200 and h["content-type"].startswith("audio/x-mpegurl") and "attachment" in h["content-disposition"]
    lines = body.decode("utf-8").splitlines()
    assert lines[0] == "#EXTM3U"
    paths = [line for line in lines if not line.startswith("#")]
    assert len(paths) == 6 and paths[0] == str(served["library"] / "arpeggio/arpeggio_03.wav")  # the seed, then 5
    assert all(os.path.isabs(p) and Path(p).is_file() and Path(p).is_relative_to(served["library"]) for p in paths)
    assert len(set(paths)) == 6 and sum(line.startswith("#EXTINF:12,") for line in lines) == 6

    code, h, body = get(served, f"/api/radio.xspf?seed={key}&length=5")
    assert code == 200 and h["content-type"].startswith("application/xspf+xml")
    ns = {"x": "http://xspf.org/ns/0/"}
    locations = [e.text for e in ET.fromstring(body).findall("x:trackList/x:track/x:location", ns)]
    assert [urllib.parse.unquote(urllib.parse.urlparse(u).path) for u in locations] == paths


def test_path_from_a_to_b_moves_steadily_and_downloads(served):
    a, b = key_of(served, "pulse/pulse_00.wav"), key_of(served, "drone/drone_00.wav")
    p = get_json(served, f"/api/path?from={a}&to={b}&length=6")
    steps = p["results"]
    keys = [r["track"] for r in steps]
    assert len(keys) == 6 == len(set(keys)) and a not in keys and b not in keys
    assert [r["t"] for r in steps] == pytest.approx([i / 7 for i in range(1, 7)])
    # only ever forward: ordered by progress along the arc, from A's side to B's side
    assert [r["progress"] for r in steps] == sorted(r["progress"] for r in steps)
    lean = [r["to_similarity"] - r["from_similarity"] for r in steps]
    assert lean[0] < 0 < lean[-1]
    mix = get_json(served, f"/api/path?from={a}&to={b}&length=6&harmonic=1")["results"]
    assert all(r["camelot"] and r["key"] for r in mix) and {r["track"] for r in mix}.isdisjoint({a, b})
    code, _, body = get(served, f"/api/path.m3u8?from={a}&to={b}&length=6")
    paths = [line for line in body.decode().splitlines() if not line.startswith("#")]
    assert (
        code == 200
        and len(paths) == 8
        and paths[0].endswith("pulse/pulse_00.wav")
        and paths[-1].endswith("drone/drone_00.wav")
    )


def test_path_walk_follows_the_arc_between_its_ends():
    from music_pipeline.search.path import path_walk, progress, slerp

    angles = np.deg2rad([0, 50, 10, 90, 30, 70, 20, 80, 40, 60])
    vectors = np.stack([np.cos(angles), np.sin(angles), np.zeros_like(angles)], axis=1).astype(np.float32)
    pos, scores, ts = path_walk(vectors, vectors[0], vectors[3], 4, exclude=[0, 3], smooth=0.0)
    assert np.rad2deg(angles[pos]).round().tolist() == [20, 40, 50, 70]  # nearest unused to 18°, 36°, 54°, 72°
    assert ts.tolist() == pytest.approx([0.2, 0.4, 0.6, 0.8]) and scores == pytest.approx(
        np.cos(np.deg2rad([2, 4, 4, 2]))
    )
    assert progress(vectors[pos], vectors[0], vectors[3]) == pytest.approx([2 / 9, 4 / 9, 5 / 9, 7 / 9])
    # pulled towards the previous pick, the first step stays closer to A; the order stays forward
    pos, _, _ = path_walk(vectors, vectors[0], vectors[3], 4, exclude=[0, 3], smooth=0.3)
    assert np.rad2deg(angles[pos]).round().tolist() == [10, 30, 50, 70]
    assert slerp(vectors[0], vectors[3], 0.5) == pytest.approx(np.array([np.sqrt(0.5), np.sqrt(0.5), 0]), abs=1e-6)
    pos, _, _ = path_walk(vectors, vectors[0], vectors[3], 20, exclude=[0, 3])
    assert len(pos) == 8 and len(set(pos.tolist())) == 8  # the library ran out: no repeats, no ends


# -- the map, reloading, the Dagster link ---------------------------------------------------------
def test_map_uses_the_umap_table_when_it_covers_the_library(served, built):
    import pandas as pd

    from music_pipeline.artifacts import write_parquet
    from music_pipeline.layout import DataLayout
    from music_pipeline.web.explorer import Explorer

    m = get_json(served, "/api/map")
    pts = m["points"]
    assert m["source"] == "pca" and m["count"] == 25 == len(pts["track"]) == len(pts["x"]) and "not built" in m["note"]
    assert set(pts["level"]) <= {"Easy", "Medium", "Hard"} and set(pts["label"]) == {
        "pulse",
        "drone",
        "arpeggio",
        "noise_rock",
    }
    code, h, _body = get(served, "/api/map", {"Accept-Encoding": "gzip"})
    assert code == 200 and h["content-encoding"] == "gzip"

    ex = Explorer(built[1])
    keys = ex.tracks["key"].tolist()
    table = pd.DataFrame(
        {
            "key": keys,
            "label": None,
            "level": None,
            "x2": np.arange(25.0),
            "y2": -np.arange(25.0),
            "x3": 0.0,
            "y3": 0.0,
            "z3": 0.0,
        }
    )
    path = write_parquet(DataLayout(built[1]).tables_dir / "embedding_map.parquet", table)
    try:
        m = Explorer(built[1]).map_points()
        assert m["source"] == "umap" and m["by_key"][keys[3]] == {"x": 3.0, "y": -3.0}
    finally:
        path.unlink()


def test_live_explorer_reloads_after_a_new_build(built, tmp_path):
    import shutil

    from music_pipeline.layout import DataLayout
    from music_pipeline.search.index import TrackIndex
    from music_pipeline.web.explorer import LiveExplorer

    data = tmp_path / "data"
    shutil.copytree(built[1], data)
    live = LiveExplorer(data, check_every=0.0)
    first = live.get()
    assert live.get() is first  # nothing changed: the same explorer
    index = TrackIndex.load(DataLayout(data).similarity_dir)
    index.tracks.loc[0, "label"] = "relabelled"
    index.info["built_at"] += 1
    index.save(DataLayout(data).similarity_dir)
    second = live.get()
    assert second is not first and second.tracks.loc[0, "label"] == "relabelled"


def test_status_file_and_the_similarity_index_links_to_the_running_explorer(served):
    import dagster as dg

    from music_pipeline.defs.assets.discovery import similarity_index
    from music_pipeline.defs.resources import MusicPipelineResource
    from music_pipeline.web.status import running_explorer, status_path

    data = served["data"]
    assert running_explorer(data) == served["url"]
    pipeline = MusicPipelineResource(data_dir=str(data), library_dir=str(served["library"]), workers=1)
    result = dg.materialize([similarity_index], resources={"pipeline": pipeline})
    md = result.asset_materializations_for_node("similarity_index")[0].metadata
    assert md["explorer"].value == served["url"] and isinstance(md["explorer"], dg.UrlMetadataValue)
    # a file left by a server that is gone is not trusted
    saved = status_path(data).read_text()
    status_path(data).write_text(json.dumps({"url": "http://127.0.0.1:9", "pid": 1}))
    try:
        assert running_explorer(data) is None
    finally:
        status_path(data).write_text(saved)


def test_serve_command_refuses_without_an_index_or_port(tmp_path, capsys):
    from music_pipeline.cli import main
    from music_pipeline.commands.serve import exposure_warning

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        assert main(["serve", "--data", str(tmp_path / "empty"), "--port", str(busy.getsockname()[1])]) == 2
    assert "address is in use" in capsys.readouterr().err
    assert main(["serve", "--data", str(tmp_path / "empty"), "--port", str(free_port())]) == 2
    assert "no similarity index" in capsys.readouterr().err
    assert (
        exposure_warning("127.0.0.1", 8765) is None
        and exposure_warning("localhost", 8765) is None
        and exposure_warning("::1", 8765) is None
    )
    warning = exposure_warning("0.0.0.0", 8765)
    assert "access token" in warning and "plain HTTP" in warning and "http://0.0.0.0:8765" in warning


def test_find_ranks_title_prefixes_first(built):
    from music_pipeline.search.discovery import Discovery

    disc = Discovery.open(built[1])
    rel = [disc.index.tracks["relpath"].iloc[i] for i in disc.find("arpeggio_0", 3)]
    assert rel == ["arpeggio/arpeggio_00.wav", "arpeggio/arpeggio_01.flac", "arpeggio/arpeggio_02.ogg"]
    assert [disc.index.tracks["relpath"].iloc[i] for i in disc.find("aiff", 5)] == [AIFF_RELPATH]


def test_files_only_ffmpeg_decodes_are_piped_to_wav(tmp_path):
    """WavPack: in the library only when ffmpeg was there to analyse it; served through ffmpeg
    (Debian's, installed for the test like the other real components; a failure under CI=true)."""
    import subprocess

    from music_pipeline.synth import SR, styled_track
    from music_pipeline.web.audio import _ffmpeg_stream, delivery_for

    from .system import require_debian

    ffmpeg = require_debian(["ffmpeg"], "ffmpeg")
    y = styled_track("drone", 3.0, seed=5)
    sf.write(tmp_path / "x.wav", y, SR, subtype="PCM_16")
    subprocess.run([ffmpeg, "-v", "error", "-i", str(tmp_path / "x.wav"), str(tmp_path / "x.wv")], check=True)
    d = delivery_for(tmp_path / "x.wv")
    assert d.mode == "ffmpeg" and d.content_type == "audio/wav"
    wav = b"".join(_ffmpeg_stream(tmp_path / "x.wv", ffmpeg))
    assert wav[:4] == b"RIFF" and wav[8:12] == b"WAVE"
    data = wav[wav.index(b"data") + 8 :]  # a piped WAV's header cannot give the length: read to the end
    decoded = np.frombuffer(data[: len(data) // 2 * 2], dtype="<i2")
    assert np.array_equal(decoded, sf.read(tmp_path / "x.wav", dtype="int16")[0])


# -- under load: HEAD, caps, bounded walks ----------------------------------------------------------
def test_head_of_an_ffmpeg_transcode_starts_no_decoder(tmp_path, monkeypatch):
    from music_pipeline.web import audio

    from .system import require_debian

    ffmpeg = require_debian(["ffmpeg"], "ffmpeg")
    monkeypatch.setattr(audio.shutil, "which", lambda name: ffmpeg)
    started = []
    monkeypatch.setattr(audio.subprocess, "Popen", lambda *a, **k: started.append(a) or pytest.fail("ffmpeg ran"))
    (tmp_path / "x.wv").write_bytes(b"wvpk" + bytes(60))
    response = audio.audio_response(tmp_path / "x.wv", audio.Delivery("ffmpeg", "audio/wav"), None, "HEAD")
    assert response.status_code == 200 and response.body == b"" and started == []
    assert response.headers["content-type"].startswith("audio/wav") and response.headers["accept-ranges"] == "none"


def test_transcodes_past_the_cap_get_503_with_retry_after(tmp_path, monkeypatch):
    """Every slot taken: the next transcode is refused at once with Retry-After; a slot is given
    back when a body ends, and when a body is dropped unread (a client that went away)."""
    import asyncio
    import gc

    from music_pipeline.synth import SR, tone
    from music_pipeline.web import audio

    monkeypatch.setattr(audio, "_TRANSCODES", audio.threading.BoundedSemaphore(2))
    monkeypatch.setattr(audio, "MAX_TRANSCODES", 2)
    path = tmp_path / "x.aiff"
    sf.write(path, tone(440, 1.0), SR, format="AIFF")
    d = audio.delivery_for(path)
    first = audio.audio_response(path, d, None)
    second = audio.audio_response(path, d, None)
    with pytest.raises(audio.AudioUnavailable) as busy:
        audio.audio_response(path, d, None)
    assert busy.value.status == 503 and busy.value.retry_after == audio.RETRY_AFTER_S

    async def drain(body):
        return b"".join([chunk async for chunk in body])

    assert len(asyncio.run(drain(first.body_iterator))) == d.wav_size  # read to the end: its slot is free

    third = audio.audio_response(path, d, None)
    del second, third  # dropped unread
    gc.collect()
    audio.audio_response(path, d, None)
    audio.audio_response(path, d, None)


def test_api_queries_past_the_cap_get_503_with_retry_after(built, monkeypatch):
    """With every query slot held by a slow request, the next request is answered 503 at once
    (Retry-After), and the held ones still finish."""
    import threading

    from music_pipeline.web import app as web_app
    from music_pipeline.web.explorer import Explorer

    _library, data = built
    monkeypatch.setattr(web_app, "MAX_CONCURRENT_QUERIES", 1)
    entered, release = threading.Event(), threading.Event()
    ex = Explorer(data)
    slow_search = ex.search
    monkeypatch.setattr(ex, "search", lambda q, n: (entered.set(), release.wait(60), slow_search(q, n))[2])
    server = ThreadServer(web_app.create_app(ex))
    with server:
        served = {"port": server.port}
        held = {}
        worker = threading.Thread(target=lambda: held.update(answer=get(served, "/api/search?q=drone")))
        worker.start()
        assert entered.wait(60)  # the slow request holds the only slot
        code, headers, _ = get(served, "/api/info")
        assert code == 503 and headers["retry-after"] == str(web_app.RETRY_AFTER_S)
        release.set()
        worker.join(30)
        assert held["answer"][0] == 200
        assert get(served, "/api/info")[0] == 200


def test_m3u8_keeps_a_path_with_a_line_break_on_one_line():
    from music_pipeline.playlists.formats import m3u8

    text = m3u8("t", [{"path": "/music/evil\n#EXTINF:1,x\n/etc/passwd.ogg", "title": "a\nb", "label": None}])
    lines = text.splitlines()
    assert lines == [
        "#EXTM3U",
        "#PLAYLIST:t",
        "#EXTINF:-1,a b",
        "file:///music/evil%0A%23EXTINF%3A1%2Cx%0A/etc/passwd.ogg",
    ]


def test_a_tightly_filtered_walk_makes_a_bounded_number_of_searches():
    """Radio and path with filters that leave few tracks: the work per request stays bounded (each
    step scores the usable tracks directly, or reuses a pool that already had to grow)."""
    from music_pipeline.search import radio
    from music_pipeline.search.path import path_walk

    rng = np.random.default_rng(0)
    n = 50_000
    vectors = rng.normal(size=(n, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    calls = []

    def neighbours(q, k):
        calls.append(k)
        return np.argsort(-(vectors @ q))[:k]

    allowed = np.zeros(n, dtype=bool)
    allowed[rng.choice(n, 300, replace=False)] = True  # a tempo window holding 300 tracks
    picked, _ = radio.radio_walk(vectors, vectors[0], 50, allowed=allowed, neighbours=neighbours)
    assert len(picked) == 50 and allowed[picked].all()
    assert set(calls) <= {200} and len(calls) <= 2 * 50  # never a wider search: few usable are scored directly
    # the library minus a region the walk may not revisit: the pool grows once, then stays grown
    calls.clear()
    usable = np.ones(n, dtype=bool)
    usable[np.argsort(-(vectors @ vectors[1]))[:30_000]] = False
    picked, _, _ = path_walk(
        vectors, vectors[1], vectors[2], 20, exclude=list(np.flatnonzero(~usable)), neighbours=neighbours
    )
    assert len(picked) == 20 and usable[picked].all()
    assert len(calls) <= 2 * 20 + 2 * 4  # two queries a step, plus at most a few widenings in all


def test_only_an_explorer_of_this_machine_is_asked(tmp_path, monkeypatch):
    """explorer.json is a file anyone with the data directory can write: a URL of another host, a
    server of another machine or a dead process is never fetched; a live local one that redirects
    elsewhere is not followed."""
    import socket
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    from music_pipeline.web import status

    fetched = []
    monkeypatch.setattr(status.urllib.request.OpenerDirector, "open", lambda self, url, **k: fetched.append(url))
    me, pid = socket.gethostname(), os.getpid()
    for record in (
        {"url": "http://192.0.2.7:8080", "host": me, "pid": pid},  # another host (TEST-NET, never contacted)
        {"url": "http://example.invalid", "host": me, "pid": pid},
        {"url": "http://127.0.0.1:9", "host": "some-other-machine", "pid": pid},
        {"url": "http://127.0.0.1:9", "host": me, "pid": 2**22 + 12345},  # no such process
        {"url": "file:///etc/passwd", "host": me, "pid": pid},
    ):
        status.status_path(tmp_path).write_text(json.dumps(record))
        assert status.running_explorer(tmp_path) is None
    assert fetched == []
    monkeypatch.undo()

    class Redirect(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(302)
            self.send_header("Location", "http://127.0.0.1:9/api/info")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Redirect)
    threading.Thread(target=server.handle_request, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}"
    status.status_path(tmp_path).write_text(json.dumps({"url": url, "host": me, "pid": pid}))
    try:
        assert status.running_explorer(tmp_path) is None
    finally:
        server.server_close()


def test_a_symlink_out_of_the_library_is_never_served(built, tmp_path):
    """A link inside the library folder that points outside it (a file, or a folder holding one):
    over HTTP the server answers 404 naming the reason and never sends the outside bytes."""
    import shutil

    from music_pipeline.web.app import create_app
    from music_pipeline.web.explorer import Explorer

    library, data = built
    secret = tmp_path / "outside" / "secret.wav"
    secret.parent.mkdir()
    shutil.copyfile(library / "drone/drone_00.wav", secret)
    (library / "escape.wav").symlink_to(secret)
    (library / "escape_dir").symlink_to(secret.parent, target_is_directory=True)
    try:
        ex = Explorer(data)
        keys = list(ex.tracks["key"].iloc[:2])
        ex.tracks.loc[0, "relpath"], ex.tracks.loc[1, "relpath"] = "escape.wav", "escape_dir/secret.wav"
        with ThreadServer(create_app(ex)) as server:
            served = {"port": server.port}
            for key in keys:
                code, _, body = get(served, f"/audio/{urllib.parse.quote(key)}")
                assert code == 404 and "not inside the library" in json.loads(body)["error"], body[:200]
                assert secret.read_bytes()[:64] not in body
    finally:
        (library / "escape.wav").unlink()
        (library / "escape_dir").unlink()


def test_library_playlists_page_and_downloads(served):
    from music_pipeline.playlists.library import LibraryPlaylists, save_playlists

    ex, library = served["explorer"], served["library"]
    rows = list(zip(ex.tracks["key"], ex.tracks["relpath"], strict=True))

    def track(k, r):
        return {"track": k, "path": str(library / r), "relpath": r, "title": Path(r).stem, "duration_s": 12.0}

    lists = [
        {
            "name": "slow drone",
            "why": "tags above the library: ambient (z +1.2)",
            "tracks": [track(*x) for x in rows[:3]],
        },
        {"name": "fast techno, hard", "why": "tempo 160–170 BPM", "tracks": [track(*x) for x in rows[3:5]]},
    ]
    save_playlists(LibraryPlaylists(lists, {"k": 2}), served["data"])
    got = get_json(served, "/api/playlists")
    assert [p["name"] for p in got["playlists"]] == ["slow drone", "fast techno, hard"]
    assert [t["track"] for t in got["playlists"][0]["tracks"]] == [k for k, _ in rows[:3]]
    assert got["playlists"][1]["why"] == "tempo 160–170 BPM"
    code, headers, body = get(served, "/api/playlists/2.m3u8")
    assert code == 200 and headers["content-type"].startswith("audio/x-mpegurl")
    paths = [line for line in body.decode().splitlines() if not line.startswith("#")]
    assert paths == [str(library / r) for _, r in rows[3:5]]
    code, _, body = get(served, "/api/playlists/1.xspf")
    assert code == 200 and body.count(b"<track>") == 3
    assert get_json(served, "/api/playlists/9.m3u8", status=404)["error"].startswith("no playlist 9")
