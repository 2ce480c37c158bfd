"""The listening history (event log, imports) and the recommender, on a synthetic library: content
vectors are clusters standing in for sources (no audio is analysed), a few FLAC files carry tags
for the ListenBrainz / Last.fm matching."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from music_pipeline.artifacts import write_json, write_parquet
from music_pipeline.layout import DataLayout
from music_pipeline.listening import recommender as rec
from music_pipeline.listening import service
from music_pipeline.listening import simulate as sim
from music_pipeline.listening.catalog import Catalog
from music_pipeline.listening.history import Event, EventLog
from music_pipeline.listening.importing import import_history

N_SOURCES, PER_SOURCE, NEW_PER_SOURCE = 10, 16, 4
# noise around each source's centre: cosine to the listener's liked tracks ranks the new tracks of her
# sources with an AUC of ~0.85 over seeds here (easier than the outside check's ~0.7; the margin on real
# audio is measured by benchmarks/bench_listening.py, docs/listening.md)
SPREAD = 6.0


def _rows(prefix: str, sources: int, per: int, seed: int, spread: float):
    from music_pipeline.features.embedding import FEATURE_NAMES

    rng = np.random.default_rng(0)  # the same source centres for old and new tracks
    centres = rng.normal(size=(sources, len(FEATURE_NAMES)))
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(sources):
        for j in range(per):
            rel = f"s{s:02d}/{prefix}{j:02d}.flac"  # names carry no trace of the source's content
            values = centres[s] + spread * rng.normal(size=len(FEATURE_NAMES))
            rows.append(
                {
                    "key": f"{prefix}{s:02d}{j:02d}",
                    "relpath": rel,
                    "label": None,
                    "group": None,
                    "content_hash": f"{prefix}{s:02d}{j:02d}",
                    "tempo_bpm": 120.0,
                    "rms_mean": 0.1,
                    "duration_s": 200.0,
                    **dict(zip(FEATURE_NAMES, values, strict=True)),
                    "_source": s,
                }
            )
    return pd.DataFrame(rows)


def _write_library(root: Path, table: pd.DataFrame, index=None):
    from music_pipeline.search.index import TrackIndex, sync_track_index

    library, data = root / "library", root / "data"
    layout = DataLayout(data)
    library.mkdir(parents=True, exist_ok=True)
    emb = table.drop(columns=["_source"])
    write_parquet(layout.embeddings_path, emb)
    write_parquet(
        layout.manifest_path,
        pd.DataFrame(
            {"key": emb["key"], "relpath": emb["relpath"], "path": [str(library / r) for r in emb["relpath"]]}
        ),
    )
    write_json(layout.library_record, {"format": 1, "path": str(library)})
    if index is None:
        index = TrackIndex.build(emb, library_root=str(library), transform="standardised")
    else:
        index, _ = sync_track_index(index, emb, library_root=str(library))
    index.save(layout.similarity_dir)
    return library, data, index


@pytest.fixture
def built(tmp_path):
    table = _rows("t", N_SOURCES, PER_SOURCE, seed=1, spread=SPREAD)
    library, data, index = _write_library(tmp_path, table)
    return tmp_path, table, library, data, index


# -- the event log ---------------------------------------------------------------------------------
def test_log_dedups_and_survives_a_torn_last_line(tmp_path):
    log = EventLog(tmp_path)
    a = Event("ana", "k1", 100.0, "play", 30.0, False)
    b = Event("ana", "k2", 101.0, "skip", 3.0)
    assert log.append([a, b, a]) == 2
    assert log.append([a]) == 0
    with open(log.path, "ab") as fh:  # a crash in the middle of a write
        fh.write(b'{"id": "x", "user": "ana", "tra')
    contents = log.read()
    assert contents.torn_tail and [e.id for e in contents.events] == [a.id, b.id]
    c = Event("bo", "k1", 102.0, "like")
    assert log.append([c]) == 1
    contents = log.read()
    assert not contents.torn_tail and [e.track for e in contents.events] == ["k1", "k2", "k1"]
    assert log.path.read_bytes().endswith(b"\n")
    # a damaged line in the middle (a hand edit) is skipped and named, the rest still reads
    lines = log.path.read_bytes().split(b"\n")
    log.path.write_bytes(b"\n".join([lines[0], b"{not json", *lines[1:]]))
    contents = log.read()
    assert contents.damaged_lines == [2] and len(contents.events) == 3


# -- imports -----------------------------------------------------------------------------------------
def test_plain_import_matches_paths_names_bad_lines_and_adds_nothing_twice(built):
    root, table, library, data, _ = built
    k0, rel1 = table["key"][0], table["relpath"][1]
    lines = [
        {
            "user": "ana",
            "track": str(library / table["relpath"][0]),
            "ts": 1_700_000_000,
            "seconds_played": 150,
            "event": "play",
        },
        {"user": "ana", "track": rel1, "ts": "2024-05-01T10:00:00Z", "seconds_played": 2, "event": "skip"},
        {"user": "bo", "track": k0, "ts": "2024-05-01 10:00:00", "event": "like"},
        {"user": "bo", "track": str(library / "elsewhere.flac"), "ts": 5, "seconds_played": 1, "event": "play"},
        {"user": "bo", "track": k0, "ts": "yesterday", "seconds_played": 1, "event": "play"},
        {"user": "bo", "track": k0, "ts": 7, "seconds_played": 1, "event": "rewind"},
    ]
    f = root / "history.jsonl"
    f.write_text("\n".join(json.dumps(x) for x in lines) + "\n{broken\n")
    catalog = Catalog.open(data)
    report = import_history(data, f, catalog)
    assert report.format == "plain" and report.added == 3
    assert [n for n, _ in report.bad] == [5, 6, 7]
    assert "yesterday" in report.bad[0][1] and "rewind" in report.bad[1][1]
    assert list(report.unmatched) == [str(library / "elsewhere.flac")]
    events = EventLog(data).read().events
    assert [e.track for e in events] == [k0, table["key"][1], k0]
    assert events[1].ts == pytest.approx(1714557600.0)
    again = import_history(data, f, catalog)
    assert again.added == 0 and again.already_stored == 3 and len(EventLog(data).read().events) == 3
    # the same events as CSV add nothing either
    csv = root / "history.csv"
    csv.write_text(f"user,track,ts,seconds_played,event\nana,{rel1},2024-05-01T10:00:00+00:00,2,skip\n")
    assert import_history(data, csv, catalog).added == 0


def test_listenbrainz_and_lastfm_are_matched_by_tags(built):
    import soundfile as sf
    from mutagen.flac import FLAC

    root, table, library, data, _ = built
    for i, (artist, title) in enumerate([("Ann Artist", "First Song"), ("Björk Band", "Second, Song!")]):
        path = library / table["relpath"][i]
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, np.zeros(800), 8000, format="FLAC")
        tags = FLAC(path)
        tags["artist"], tags["title"] = artist, title
        tags.save()
    lb = root / "listens.json"
    lb.write_text(
        json.dumps(
            [
                {
                    "listened_at": 1700000000,
                    "user_name": "cy",
                    "track_metadata": {"artist_name": "ann artist", "track_name": "First song"},
                },
                {
                    "listened_at": 1700000300,
                    "user_name": "cy",
                    "track_metadata": {"artist_name": "Bjork Band", "track_name": "Second Song"},
                },
                {
                    "listened_at": 1700000600,
                    "user_name": "cy",
                    "track_metadata": {"artist_name": "Nobody", "track_name": "Gone"},
                },
                {"user_name": "cy", "track_metadata": {"artist_name": "Ann Artist", "track_name": "First Song"}},
            ]
        )
    )
    catalog = Catalog.open(data)
    report = import_history(data, lb, catalog)
    assert report.format == "listenbrainz" and report.added == 2 and len(report.bad) == 1
    assert list(report.unmatched) == ["Nobody — Gone"]
    fm = root / "scrobbles.csv"
    fm.write_text(
        "uts,utc_time,artist,artist_mbid,album,album_mbid,track,track_mbid\n1700000900,,Ann Artist,,,,First Song,\n"
    )
    nobody = import_history(data, fm, catalog)  # a Last.fm export names no listener
    assert nobody.added == 0 and nobody.bad == [(2, "no listener named: give --user NAME")]
    report = import_history(data, fm, catalog, user="dee")
    assert report.format == "lastfm" and report.added == 1
    users = [(e.user, e.track, e.finished) for e in EventLog(data).read().events]
    assert users[-1] == ("dee", table["key"][0], True)


# -- the recommender: the outside check, mimicked on clusters --------------------------------------
def _check_history(table, library) -> tuple[Path, dict]:
    keys = table["key"].to_numpy()
    groups = table["_source"].astype(str).to_numpy()
    events, roles = sim.check_scenario(keys, groups, table["duration_s"].to_numpy(), seed=3)
    path_of = dict(zip(table["key"], table["relpath"], strict=True))
    lines = [
        json.dumps(
            {
                "user": r.user,
                "track": str(library / path_of[r.track]),
                "ts": int(r.ts),
                "seconds_played": r.seconds_played,
                "event": r.event,
            }
        )
        for r in events.itertuples()
    ]
    return "\n".join(lines) + "\n", roles


def test_recommend_ranks_her_sources_first_then_new_tracks_of_them(built, capsys):
    from music_pipeline.cli import main

    root, table, library, data, index = built
    text, roles = _check_history(table, library)
    (root / "four.jsonl").write_text(text)
    assert main(["history", "import", str(root / "four.jsonl"), "--data", str(data)]) == 0
    capsys.readouterr()
    assert main(["recommend", "--user", "her", "-n", "400", "--data", str(data), "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["user"] == "her" and set(answer["results"][0]) == {"track", "path", "score", "why"}
    source = dict(zip(table["key"], table["_source"].astype(str), strict=True))
    played = set(table["key"].to_numpy()[roles["her_played"]])
    skipped = {k for k, s in source.items() if s == roles["skipped_source"]}
    ranked = [r["track"] for r in answer["results"]]
    assert not (set(ranked) & (played | skipped)), "played and skipped tracks are never recommended"
    assert len(ranked) == len(table) - len(played) - len(skipped)
    scores = -np.arange(len(ranked), dtype=float)
    mine = np.array([source[k] in roles["her_sources"] for k in ranked])
    assert sim.auc(scores, mine) >= 0.85

    # new tracks, built and never played: recommendable at once, her sources' first
    new = _rows("n", N_SOURCES, NEW_PER_SOURCE, seed=2, spread=SPREAD)
    _write_library(root, pd.concat([table, new], ignore_index=True), index)
    answer = service.recommend(data, "her", n=1000)
    assert "up to date" in answer["model"], "new tracks alone do not retrain the model"
    new_keys = set(new["key"])
    new_source = dict(zip(new["key"], new["_source"].astype(str), strict=True))
    ranked_new = [r["track"] for r in answer["results"] if r["track"] in new_keys]
    assert len(ranked_new) == len(new)
    mine = np.array([new_source[k] in roles["her_sources"] for k in ranked_new])
    assert sim.auc(-np.arange(len(ranked_new), dtype=float), mine) >= 0.75
    top20 = {r["track"] for r in answer["results"][:20]}
    hers_new = {k for k, s in new_source.items() if s in roles["her_sources"]}
    assert len(top20 & hers_new) >= len(hers_new) / 2


def test_model_retrains_only_when_enough_events_arrived(built):
    _, table, _, data, _ = built
    keys = table["key"].tolist()
    log = EventLog(data)
    log.append([Event("ana", k, 1000.0 + i, "play", 200.0, True) for i, k in enumerate(keys[:40])])
    lib = service.open_library(data)
    _, state = service.ensure_model(data, lib)
    assert state.startswith("retrained")
    log.append([Event("bo", keys[50], 5000.0, "play", 100.0)])  # 1 of 41: under the 10 % share
    _, state = service.ensure_model(data, lib)
    assert state.startswith("up to date")
    # but the listener's own new events count at once
    answer = service.recommend(data, "bo", n=5, lib=lib)
    assert answer["evidence"]["played_tracks"] == 1 and keys[50] not in {r["track"] for r in answer["results"]}
    log.append([Event("bo", k, 6000.0 + i, "play", 100.0) for i, k in enumerate(keys[60:70])])
    _, state = service.ensure_model(data, lib)
    assert state.startswith("retrained") and "changed" in state


def test_playing_coefficient_and_skips():
    events = pd.DataFrame(
        [
            ["u", "a", 1.0, "play", 50.0, False],
            ["u", "a", 2.0, "play", 400.0, False],
            ["u", "b", 3.0, "skip", 2.0, False],
            ["u", "c", 4.0, "play", None, True],
            ["u", "c", 5.0, "like", None, None],
        ],
        columns=["user", "track", "ts", "event", "seconds_played", "finished"],
    )
    inter = rec.interactions(events, {"a": 200.0, "b": 200.0, "c": 100.0}).set_index("track")
    assert inter.loc["a", "value"] == pytest.approx(0.25 + 1.0)  # clipped to 1
    assert inter.loc["b", "value"] == pytest.approx(-1.0)
    assert inter.loc["c", "value"] == pytest.approx(2.0)


# -- the explorer --------------------------------------------------------------------------------------
def _request(port, method, path, body=None, headers=None):
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request(method, path, body=None if body is None else json.dumps(body), headers=headers or {})
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    headers = {k.lower(): v for k, v in resp.getheaders()}
    is_json = headers.get("content-type", "").startswith("application/json")
    return resp.status, headers, json.loads(data) if is_json and data else data


def test_explorer_records_events_and_recommends(built):
    from music_pipeline.web.app import create_app
    from music_pipeline.web.explorer import Explorer

    from .web_library import ThreadServer

    _, table, _, data, _ = built
    keys = table["key"].tolist()
    with ThreadServer(create_app(Explorer(data))) as server:
        p = server.port
        json_type = {"Content-Type": "application/json"}
        for k in keys[:6]:
            body = {"user": "eve", "track": k, "event": "play", "seconds_played": 190, "finished": True}
            code, _, answer = _request(p, "POST", "/api/events", body, json_type)
            assert code == 200 and answer["recorded"], answer
        code, _, answer = _request(
            p, "POST", "/api/events", {"user": "eve", "track": keys[7], "event": "skip"}, json_type
        )
        assert code == 200
        # a cross-site form cannot record (no JSON content type), nor a page of another origin
        code, _, _ = _request(p, "POST", "/api/events", {"user": "eve", "track": keys[8], "event": "like"})
        assert code == 415
        code, _, _ = _request(
            p,
            "POST",
            "/api/events",
            {"user": "eve", "track": keys[8], "event": "like"},
            {**json_type, "Origin": "http://evil.example"},
        )
        assert code == 403
        code, _, answer = _request(
            p, "POST", "/api/events", {"user": "eve", "track": "nope", "event": "play"}, json_type
        )
        assert code == 422 and "no track" in answer["error"]
        assert [e.event for e in EventLog(data).read().events] == ["play"] * 6 + ["skip"]
        code, _, answer = _request(p, "GET", "/api/recommend?user=eve&n=10")
        assert code == 200 and len(answer["results"]) == 10
        assert not {r["track"] for r in answer["results"]} & set(keys[:8])
        assert all(r["why"] for r in answer["results"])
        code, _, radio = _request(p, "GET", "/api/listener-radio?user=eve&length=5")
        assert code == 200 and len(radio["results"]) == 5
        assert _request(p, "GET", "/api/listeners")[2] == {"listeners": ["eve"]}


def test_token_is_needed_for_every_request_when_set(built):
    from music_pipeline.web.app import create_app
    from music_pipeline.web.explorer import Explorer

    from .web_library import ThreadServer

    _, table, _, data, _ = built
    with ThreadServer(create_app(Explorer(data), loopback_only=False, token="s3cret")) as server:
        p = server.port
        assert _request(p, "GET", "/api/info")[0] == 401
        assert _request(p, "GET", "/api/info?token=wrong")[0] == 401
        body = {"user": "eve", "track": table["key"][0], "event": "like"}
        assert _request(p, "POST", "/api/events", body, {"Content-Type": "application/json"})[0] == 401
        assert not EventLog(data).exists()
        code, headers, _ = _request(p, "GET", "/api/info?token=s3cret")
        assert code == 200 and "mp_token=s3cret" in headers["set-cookie"]
        assert _request(p, "GET", "/static/app.js", headers={"Cookie": "mp_token=s3cret"})[0] == 200
        auth = {"Authorization": "Bearer s3cret", "Content-Type": "application/json"}
        assert _request(p, "POST", "/api/events", body, auth)[0] == 200
