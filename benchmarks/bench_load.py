"""The explorer under load: concurrent clients browsing, searching and streaming over loopback.

Run by hand (not a test):

    python benchmarks/bench_load.py [--tracks 20000] [--clients 1,4,16,64] [--rounds 3]
                                    [--seconds 60] [--seed 0] [--out results.json]

The library: index-only scale plus a small audio subset. ``bench_serve.synthetic_index`` builds a
similarity index of ``--tracks`` synthetic tracks (the same generator and table as bench_serve, so
search, similar, radio and path do their real work at library scale without analysing any audio),
then a few dozen of its rows are pointed at real synthesized files (``synth.styled_track``, 20 s
each) written under the index's library root: wav/flac/ogg (sent as they are, Range by the file
server), 24-bit stereo AIFF (rendered as WAV on the fly, Range by frame offset, one transcode slot
each) and, when /usr/bin/ffmpeg exists, WavPack (piped through ffmpeg, no Range). Analysing a real
library of that size would take far longer than the load test itself, and the audio endpoints only
need real files, not their features. The server is the real one (``music-pipeline serve`` as a
subprocess on 127.0.0.1, bench_serve.serving).

Each level runs N clients (threads, one keep-alive ``http.client`` connection each, no think time:
the worst case for the server) released together. A client plays a fixed script ``--rounds``
times, with tracks drawn from its own seeded generator: the page ``/``, search as you type (four
prefixes of a title), ``/api/similar``, ``/api/track/KEY``, ``/api/radio`` plain and with tight
tempo and energy filters, ``/api/path``, full and Range (``bytes=S-``, a seek) GETs of a native and
of an AIFF track, a full GET of a WavPack track, and a HEAD of any audio track; each client starts at its own (seeded) step of
the script, so the kinds are mixed at every moment. A level stops at
``--seconds`` of wall clock; requests not made by then are reported as not run. A 503 is not
retried (the explorer shows "busy"): it counts as shed when it carries Retry-After, as an error
when it does not. Any other status than the expected one (206 for Range, else 200), a timeout or a
broken connection is an error.

Reported per level and per endpoint kind: count, p50, p95 and max latency (first byte to last byte
read), shed, errors by status; per level the throughput, how long the server stayed busy after
the clients were done (until ``/api/info`` answers 200 again and the server's CPU is quiet: work
for a client that timed out goes on and may hold its query slot; the next level starts only then), the server's CPU seconds
(with its finished ffmpeg children), and its RSS (VmRSS of its process from /proc, sampled every
0.1 s: at the start, the peak, and after the level) to show memory stays flat. The 1-client level is always run first and is the baseline (the per-request
floor; it plays ``--baseline-rounds`` rounds, 10 by default, for enough samples): the other levels
show each kind's p95 as a multiple of it. The clients run in this process
on the same cores as the server, so at high client counts part of the latency is the clients' own.
The server inherits this process's environment: ``OPENBLAS_NUM_THREADS=1 python
benchmarks/bench_load.py`` measures it with one BLAS thread per query instead of OpenBLAS's default
(one per core, which under concurrent radio and path queries spin and multiply their CPU time).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_serve import serving, synthetic_index

from music_pipeline.layout import DataLayout
from music_pipeline.synth import SR, STYLES, styled_track
from music_pipeline.web.app import MAX_CONCURRENT_QUERIES
from music_pipeline.web.audio import MAX_TRANSCODES, WAV_HEADER_BYTES

FFMPEG = Path("/usr/bin/ffmpeg")
NATIVE_EXTS = ("wav", "flac", "ogg")
AUDIO_SECONDS = 20.0
TIMEOUT_S = 30.0
# kinds in the order of the tables
KINDS = [
    "page /",
    "search (typing)",
    "similar",
    "track page",
    "radio",
    "radio (bpm+energy)",
    "path",
    "audio native",
    "audio native Range",
    "audio AIFF→WAV",
    "audio AIFF→WAV Range",
    "audio WavPack (ffmpeg)",
    "HEAD audio",
]


# -- the library ---------------------------------------------------------------------------------
@dataclass
class AudioTrack:
    key: str
    mode: str  # native | wav | ffmpeg
    size: int  # bytes of what the server sends whole (0 = unknown before decoding)


def audio_library(data: Path, n: int, per_style: int, seed: int) -> tuple[list[str], list[AudioTrack]]:
    """The synthetic index of ``n`` tracks, with ``per_style`` native, ``per_style // 2`` AIFF and
    (with ffmpeg) ``per_style // 3`` WavPack rows per style pointed at real files. Returns (all keys,
    the audio tracks)."""
    ti = synthetic_index(n, data, approximate_above=50_000, seed=seed)
    library = Path(ti.info["library_root"])
    rng = np.random.default_rng(seed + 1)
    wanted = per_style + per_style // 2 + (per_style // 3 if FFMPEG.exists() else 0)
    rows = iter(rng.choice(n, size=len(STYLES) * wanted, replace=False))
    audio: list[AudioTrack] = []
    for s_idx, style in enumerate(STYLES):
        for i in range(wanted):
            y = styled_track(style, AUDIO_SECONDS, seed=100 * s_idx + i)
            if i < per_style:
                ext, mode = NATIVE_EXTS[i % len(NATIVE_EXTS)], "native"
            elif i < per_style + per_style // 2:
                ext, mode = "aiff", "wav"
            else:
                ext, mode = "wv", "ffmpeg"
            rel = f"{style}/{style}_{i:02d}.{ext}"
            path = library / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            if mode == "wav":  # as the explorer tests: a second channel, 24-bit big-endian
                sf.write(path, np.stack([y, 0.5 * y], axis=1), SR, format="AIFF", subtype="PCM_24")
                size = WAV_HEADER_BYTES + len(y) * 2 * 2
            elif mode == "ffmpeg":
                wav = path.with_suffix(".tmp.wav")
                sf.write(wav, y, SR)
                subprocess.run(
                    [str(FFMPEG), "-nostdin", "-v", "error", "-y", "-i", str(wav), "-c:a", "wavpack", str(path)],
                    check=True,
                )
                wav.unlink()
                size = 0
            else:
                sf.write(path, y, SR)
                size = path.stat().st_size
            row = int(next(rows))
            ti.tracks.loc[row, "relpath"] = rel
            audio.append(AudioTrack(str(ti.tracks.loc[row, "key"]), mode, size))
    ti.save(DataLayout(data).similarity_dir)
    return ti.tracks["key"].astype(str).tolist(), audio


# -- a client's script ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Request:
    kind: str
    method: str
    url: str
    range_start: int | None = None  # Range: bytes=S-

    @property
    def expected(self) -> int:
        return 206 if self.range_start is not None else 200


def script(keys: list[str], audio: list[AudioTrack], rounds: int, rng: random.Random) -> list[Request]:
    by_mode = {m: [a for a in audio if a.mode == m] for m in ("native", "wav", "ffmpeg")}
    out: list[Request] = []
    q = quote
    for _ in range(rounds):
        out.append(Request("page /", "GET", "/"))
        word = keys[rng.randrange(len(keys))].split("_")[-1]  # "track012345-…", typed
        out += [Request("search (typing)", "GET", f"/api/search?q={q(word[:k])}&limit=12") for k in (2, 4, 6, 8)]
        a, b = rng.sample(keys, 2)
        out.append(Request("similar", "GET", f"/api/similar?track={q(a)}&n=10"))
        out.append(Request("track page", "GET", f"/api/track/{q(b)}"))
        out.append(Request("radio", "GET", f"/api/radio?seed={q(a)}&length=20"))
        bpm, energy = rng.uniform(80, 170), rng.uniform(0.2, 0.8)
        out.append(
            Request(
                "radio (bpm+energy)",
                "GET",
                f"/api/radio?seed={q(b)}&length=20&bpm={bpm:.1f}&bpm_tolerance=3&energy={energy:.2f}&energy_tolerance=0.05",
            )
        )
        out.append(Request("path", "GET", f"/api/path?from={q(a)}&to={q(b)}&length=10"))
        for mode, label in (("native", "audio native"), ("wav", "audio AIFF→WAV")):
            t = rng.choice(by_mode[mode])
            out.append(Request(label, "GET", f"/audio/{q(t.key)}"))
            t = rng.choice(by_mode[mode])
            out.append(Request(f"{label} Range", "GET", f"/audio/{q(t.key)}", rng.randrange(t.size // 4, t.size // 2)))
        if by_mode["ffmpeg"]:
            out.append(Request("audio WavPack (ffmpeg)", "GET", f"/audio/{q(rng.choice(by_mode['ffmpeg']).key)}"))
        out.append(Request("HEAD audio", "HEAD", f"/audio/{q(rng.choice(audio).key)}"))
    # each client starts at its own step of the script: clients in lockstep would all ask for the
    # same kind at once, which no set of real listeners does
    start = rng.randrange(len(out) // rounds)
    return out[start:] + out[:start]


@dataclass
class Outcome:
    kind: str
    ms: float
    status: int | str  # HTTP status, or "timeout" / "connection" / "short body"
    retry_after: bool = False


@dataclass
class Client:
    port: int
    requests: list[Request]
    outcomes: list[Outcome] = field(default_factory=list)
    conn: http.client.HTTPConnection | None = None

    def one(self, r: Request) -> Outcome:
        if self.conn is None:
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=TIMEOUT_S)
        headers = {} if r.range_start is None else {"Range": f"bytes={r.range_start}-"}
        t0 = time.perf_counter()
        try:
            self.conn.request(r.method, r.url, headers=headers)
            resp = self.conn.getresponse()
            while resp.read(1 << 16):  # read to the end, discarding: a player's memory is not measured
                pass
            ms = (time.perf_counter() - t0) * 1000
            if resp.will_close:
                self.close()
            return Outcome(r.kind, ms, resp.status, resp.getheader("Retry-After") is not None)
        except (TimeoutError, OSError, http.client.HTTPException) as exc:
            self.close()
            status = (
                "timeout"
                if isinstance(exc, TimeoutError)
                else "short body"
                if isinstance(exc, http.client.IncompleteRead)
                else "connection"
            )
            return Outcome(r.kind, (time.perf_counter() - t0) * 1000, status)

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def run(self, start: threading.Barrier, deadline: list[float]) -> None:
        start.wait()
        try:
            for r in self.requests:
                if time.perf_counter() >= deadline[0]:
                    break
                self.outcomes.append(self.one(r))
        finally:
            self.close()


# -- the server's memory and CPU -----------------------------------------------------------------
def cpu_s(pid: int) -> float:
    """CPU seconds of the server and of its finished children (ffmpeg), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def drain(port: int, pid: int, limit: float) -> float:
    """Seconds until the server is idle again once the clients are gone: ``/api/info`` answers 200
    (work it still does for clients that gave up holds query slots until it ends) and it used less
    than 5 % of a core over half a second."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < limit:
        cpu0 = cpu_s(pid)
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT_S)
            c.request("GET", "/api/info")
            r = c.getresponse()
            r.read()
            c.close()
            answered = r.status == 200
        except (OSError, http.client.HTTPException):
            answered = False
        time.sleep(0.5)
        if answered and cpu_s(pid) - cpu0 < 0.025:
            return time.perf_counter() - t0
    raise TimeoutError(f"the server was still busy {limit:.0f} s after its clients were gone")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class RssSampler(threading.Thread):
    def __init__(self, pid: int, every: float = 0.1):
        super().__init__(daemon=True)
        self.pid, self.every, self.samples, self.stop = pid, every, [], threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            self.samples.append(rss_mb(self.pid))
            self.stop.wait(self.every)


# -- a level -------------------------------------------------------------------------------------
def level(port: int, pid: int, clients: int, keys, audio, rounds: int, seconds: float, seed: int) -> dict:
    runners = [
        Client(port, script(keys, audio, rounds, random.Random(seed * 100_003 + 7919 * clients + c)))
        for c in range(clients)
    ]
    start = threading.Barrier(clients + 1)
    deadline = [float("inf")]
    threads = [threading.Thread(target=c.run, args=(start, deadline), daemon=True) for c in runners]
    for t in threads:
        t.start()
    rss_start, cpu_start = rss_mb(pid), cpu_s(pid)
    sampler = RssSampler(pid)
    sampler.start()
    t0 = time.perf_counter()
    deadline[0] = t0 + seconds
    start.wait()
    for t in threads:
        t.join(seconds + 2 * TIMEOUT_S)
    wall = time.perf_counter() - t0
    drained = drain(port, pid, 300)
    time.sleep(1.0)  # let the server drop what the level left (closed connections, finished streams)
    sampler.stop.set()
    sampler.join()
    rss_end, cpu = rss_mb(pid), cpu_s(pid) - cpu_start

    outcomes = [o for c in runners for o in c.outcomes]
    planned = sum(len(c.requests) for c in runners)
    expected = {r.kind: r.expected for c in runners for r in c.requests}
    kinds = {}
    for kind in KINDS:
        mine = [o for o in outcomes if o.kind == kind]
        if not mine:
            continue
        ok = np.array([o.ms for o in mine if o.status == expected[kind]])
        shed = sum(1 for o in mine if o.status == 503 and o.retry_after)
        errors = Counter(
            str(o.status) + (" no Retry-After" if o.status == 503 else "")
            for o in mine
            if o.status != expected[kind] and not (o.status == 503 and o.retry_after)
        )
        kinds[kind] = {
            "count": len(mine),
            "ok": len(ok),
            "p50_ms": float(np.percentile(ok, 50)) if len(ok) else None,
            "p95_ms": float(np.percentile(ok, 95)) if len(ok) else None,
            "max_ms": float(ok.max()) if len(ok) else None,
            "shed": shed,
            "errors": dict(errors),
        }
    ok_all = np.array([o.ms for o in outcomes if o.status == expected[o.kind]])
    return {
        "clients": clients,
        "planned": planned,
        "made": len(outcomes),
        "wall_s": wall,
        "req_per_s": len(outcomes) / wall,
        "drain_s": drained,
        "server_cpu_s": cpu,
        "p50_ms": float(np.percentile(ok_all, 50)) if len(ok_all) else None,
        "p95_ms": float(np.percentile(ok_all, 95)) if len(ok_all) else None,
        "shed": sum(k["shed"] for k in kinds.values()),
        "errors": sum(sum(k["errors"].values()) for k in kinds.values()),
        "rss_mb": {"start": rss_start, "peak": max(sampler.samples, default=rss_start), "end": rss_end},
        "kinds": kinds,
    }


def fmt(v: float | None, digits: int = 1) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def print_level(r: dict, floor: dict | None) -> None:
    rss = r["rss_mb"]
    print(
        f"\n### {r['clients']} client{'s' if r['clients'] > 1 else ''}"
        + (" (baseline: the per-request floor)" if floor is None else "")
        + f": {r['made']}/{r['planned']} requests in {r['wall_s']:.1f} s ({r['req_per_s']:.1f}/s), "
        f"server busy {r['drain_s']:.1f} s more after the clients, {r['server_cpu_s']:.1f} s CPU, "
        f"server RSS {rss['start']:.0f} → peak {rss['peak']:.0f} → {rss['end']:.0f} MB\n"
    )
    print("| kind | count | p50 ms | p95 ms | max ms | p95 × floor | shed (503) | errors |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for kind, k in r["kinds"].items():
        base = floor["kinds"].get(kind, {}).get("p95_ms") if floor else None
        ratio = fmt(k["p95_ms"] / base) if base and k["p95_ms"] is not None else "–"
        errs = ", ".join(f"{s}: {n}" for s, n in sorted(k["errors"].items())) or "0"
        print(
            f"| {kind} | {k['count']} | {fmt(k['p50_ms'])} | {fmt(k['p95_ms'])} | {fmt(k['max_ms'])} | {ratio} "
            f"| {k['shed']} | {errs} |"
        )


def print_summary(levels: list[dict]) -> None:
    print(
        "\n| clients | requests made/planned | req/s | p50 ms | p95 ms | shed | errors | busy after (s) "
        "| server CPU s | server RSS MB start / peak / end |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in levels:
        m = r["rss_mb"]
        print(
            f"| {r['clients']} | {r['made']}/{r['planned']} | {r['req_per_s']:.1f} | {fmt(r['p50_ms'])} "
            f"| {fmt(r['p95_ms'])} | {r['shed']} | {r['errors']} | {r['drain_s']:.1f} | {r['server_cpu_s']:.1f} "
            f"| {m['start']:.0f} / {m['peak']:.0f} / {m['end']:.0f} |"
        )


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tracks", type=int, default=20_000, help="tracks in the synthetic index")
    ap.add_argument("--per-style", type=int, default=6, help="native audio files per style (4 styles)")
    ap.add_argument("--clients", default="1,4,16,64", help="client counts, one level each, in this order (1 first)")
    ap.add_argument("--rounds", type=int, default=3, help="times each client plays its script")
    ap.add_argument(
        "--baseline-rounds", type=int, default=10, help="times the 1-client baseline plays its script (more samples)"
    )
    ap.add_argument("--seconds", type=float, default=60.0, help="wall-clock cap of each level")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, help="write the results as JSON to this file")
    args = ap.parse_args(argv)
    counts = [int(c) for c in args.clients.split(",")]  # in this order: a repeated level shows drift
    if counts[0] != 1:
        counts.insert(0, 1)

    root = Path(tempfile.mkdtemp(prefix="bench_load_"))
    try:
        data = root / "data"
        t0 = time.perf_counter()
        keys, audio = audio_library(data, args.tracks, args.per_style, args.seed)
        modes = Counter(a.mode for a in audio)
        print(
            f"{args.tracks:,} indexed tracks, {len(audio)} with audio ({modes['native']} native, {modes['wav']} AIFF, "
            f"{modes['ffmpeg']} WavPack), built in {time.perf_counter() - t0:.1f} s; "
            f"server caps: {MAX_CONCURRENT_QUERIES} API queries, {MAX_TRANSCODES} transcodes",
            flush=True,
        )
        with serving(data, root / "serve.log") as (port, startup, pid):
            print(f"server up in {startup:.1f} s (pid {pid}, RSS {rss_mb(pid):.0f} MB)", flush=True)
            warm = Client(port, script(keys, audio, 1, random.Random(-1)))
            warm.outcomes = [warm.one(r) for r in warm.requests]  # first calls: map, deliveries
            warm.close()
            levels = []
            for n in counts:
                rounds = max(args.rounds, args.baseline_rounds) if not levels else args.rounds
                r = level(port, pid, n, keys, audio, rounds, args.seconds, args.seed)
                levels.append(r)
                print_level(r, None if len(levels) == 1 else levels[0])
                sys.stdout.flush()
        log = (root / "serve.log").read_text(errors="replace")
    finally:
        shutil.rmtree(root, ignore_errors=True)

    print_summary(levels)
    if "Traceback" in log:
        print(f"\nthe server logged {log.count('Traceback')} traceback(s); the first:\n")
        print(log[log.index("Traceback") :][:3000])
    if args.out:
        args.out.write_text(
            json.dumps(
                {
                    "tracks": args.tracks,
                    "audio": dict(modes),
                    "rounds": args.rounds,
                    "baseline_rounds": args.baseline_rounds,
                    "seconds": args.seconds,
                    "seed": args.seed,
                    "max_concurrent_queries": MAX_CONCURRENT_QUERIES,
                    "max_transcodes": MAX_TRANSCODES,
                    "levels": levels,
                    "server_tracebacks": log.count("Traceback"),
                },
                indent=1,
            )
        )
        print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
