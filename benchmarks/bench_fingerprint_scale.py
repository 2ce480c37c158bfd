"""Fingerprint lookup at library scale: latency, index size on disk and a lookup process's memory,
memory-mapped (the index's format 2) against loading the whole index (format 1), same run.

    nice -n 15 ionice -c2 -n7 python benchmarks/bench_fingerprint_scale.py [--library /work/dev_library]
        [--tracks 100000] [--compare-tracks 10000] [--track-seconds 210] [--real 24] [--clips 20]
        [--work DIR] [--keep] [--seed 0]

Real material sets what is realistic: ``--real`` seeded files of the library are fingerprinted,
giving the landmarks per second and the distribution of hash values. A synthetic index of
``--tracks`` tracks of ``--track-seconds`` each is then written in the index's own format (sorted
hashes drawn from that distribution, random tracks and anchor frames), with one real track planted
in it (it must still be found) and the other real tracks held out (their clips must not be).
Every lookup runs in a fresh process that first evicts the index files from the page cache
(``posix_fadvise``), so a lookup reads what it needs from disk; the process reports per-clip
latency (the search only; the clip's own fingerprint is computed beforehand; cold, then the same
clips again warm), its peak RSS and its resident anonymous/file pages after the lookups. Modes:
``mmap`` (format 2 as ``identify`` opens it: ranges, no read-ahead, each step's pages asked for
together), ``mmap_fault`` (the same without asking ahead: one page fault at a time),
``mmap_plain`` (the files mapped with the kernel's read-ahead and one ``searchsorted`` over all
hashes) and ``load_whole`` (format 1: every array read into memory). The whole-index load is measured on
``--compare-tracks`` tracks (at 100k tracks it would not fit in this machine's memory), the
memory-mapped lookup on both sizes.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from music_pipeline.artifacts import write_json, write_npz
from music_pipeline.audio.decode import ANALYSIS_SR, AudioError, decode
from music_pipeline.identity.fingerprint import DF_BITS, DT_BITS, F_BITS, FRAME_S, fingerprint_signal
from music_pipeline.identity.index import MAX_HITS_PER_HASH, FingerprintIndex, directory_bits, make_directory
from music_pipeline.identity.library import CURRENT, INDEX_FORMAT, LANDMARK_ARRAYS
from music_pipeline.identity.store import FINGERPRINT_VERSION
from music_pipeline.layout import DataLayout

HASH_SPACE = 1 << (F_BITS + DF_BITS + DT_BITS)
CLIP_S = 10.0
CHUNK = 1 << 17  # hash values per written chunk (~45 M landmarks at 100k tracks)


def real_fingerprints(library: Path, n: int, seed: int):
    files = sorted(p for p in library.rglob("*") if p.suffix.lower() in (".ogg", ".wav", ".flac", ".mp3", ".opus"))
    rng = np.random.default_rng(seed)
    out = []
    for i in rng.permutation(len(files)):
        if len(out) >= n:
            break
        try:
            a = decode(files[i])
        except AudioError:
            continue
        if a.duration_s < 3 * CLIP_S:
            continue
        out.append((files[i], a.y, fingerprint_signal(a.y, a.sr)))
    return out


def write_index(
    folder: Path, n_tracks: int, per_track: int, track_frames: int, p_hash: np.ndarray, planted, seed: int
) -> int:
    """The synthetic index (format 2) with ``planted`` (a Fingerprint) as the last track; landmarks."""
    rng = np.random.default_rng(seed)
    total = n_tracks * per_track
    counts = rng.multinomial(total, p_hash).astype(np.int64)
    ph = planted.hashes.astype(np.int64)
    counts += np.bincount(ph, minlength=HASH_SPACE)
    n = int(counts.sum())
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        name: np.lib.format.open_memmap(folder / f"{name}.npy", mode="w+", dtype=dt, shape=(n,))
        for name, dt in (("hashes", np.uint32), ("tracks", np.int32), ("frames", np.int32))
    }
    order = np.argsort(ph, kind="stable")
    ph_sorted, pf_sorted = ph[order], planted.frames[order]
    at = 0
    for lo in range(0, HASH_SPACE, CHUNK):
        hi = min(HASH_SPACE, lo + CHUNK)
        c = counts[lo:hi].copy()
        a, b = np.searchsorted(ph_sorted, [lo, hi])
        c -= np.bincount(ph_sorted[a:b] - lo, minlength=hi - lo)  # the synthetic share
        m = int(c.sum())
        h = np.repeat(np.arange(lo, hi, dtype=np.uint32), c)
        t = rng.integers(0, n_tracks, m, dtype=np.int32)
        f = rng.integers(0, track_frames, m, dtype=np.int32)
        # planted landmarks go after the synthetic ones of the same hash (order within a hash is free)
        where = np.searchsorted(h, ph_sorted[a:b].astype(np.uint32), side="right")
        h = np.insert(h, where, ph_sorted[a:b].astype(np.uint32))
        t = np.insert(t, where, np.int32(n_tracks))
        f = np.insert(f, where, pf_sorted[a:b].astype(np.int32))
        k = len(h)
        arrays["hashes"][at : at + k] = h
        arrays["tracks"][at : at + k] = t
        arrays["frames"][at : at + k] = f
        at += k
    assert at == n, (at, n)
    for arr in arrays.values():
        arr.flush()
    np.save(folder / "directory.npy", make_directory(arrays["hashes"], directory_bits(n)))
    del arrays
    keys = np.array([f"t{i:06d}" for i in range(n_tracks + 1)])
    write_npz(
        folder / "library.npz",
        {
            "content_hashes": keys,
            "keys": keys,
            "relpaths": np.char.add(keys, ".ogg"),
            "content_of": np.arange(n_tracks + 1, dtype=np.int32),
        },
        compress=False,
    )
    return n


def publish(data: Path, folder_name: str, n: int, n_tracks: int) -> None:
    root = DataLayout(data).fingerprint_index_dir
    write_json(
        root / CURRENT,
        {
            "format": INDEX_FORMAT,
            "version": FINGERPRINT_VERSION,
            "folder": folder_name,
            "landmarks": n,
            "contents": n_tracks + 1,
            "tracks": n_tracks + 1,
        },
    )


# -- the lookup process -------------------------------------------------------------------------
def status_kb() -> dict:
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        k, _, v = line.partition(":")
        if k in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
            out[k] = int(v.split()[0])
    return out


def evict(folder: Path) -> None:
    for name in LANDMARK_ARRAYS:
        fd = os.open(folder / f"{name}.npy", os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def child(data: str, mode: str, clips: str) -> None:
    from music_pipeline.identity.library import load_index

    root = DataLayout(data).fingerprint_index_dir
    folder = root / json.loads((root / CURRENT).read_text())["folder"]
    evict(folder)
    before = status_kb()
    t0 = time.perf_counter()
    if mode == "mmap":  # format 2, as identify opens it
        index = load_index(data, rebuild_if_stale=False).index
    elif mode == "mmap_fault":  # the same mapping without asking for the pages ahead: one fault at a time
        mapped = load_index(data, rebuild_if_stale=False).index
        index = FingerprintIndex(mapped.hashes, mapped.tracks, mapped.frames, mapped.content_hashes, mapped.directory)
    elif mode == "mmap_plain":  # the same files mapped with read-ahead, one searchsorted over all hashes
        z = {a: np.load(folder / f"{a}.npy", mmap_mode="r") for a in LANDMARK_ARRAYS}
        index = FingerprintIndex(z["hashes"], z["tracks"], z["frames"], np.array([]), z["directory"])

        def whole(h, a=z["hashes"]):
            return np.searchsorted(a, h, side="left"), np.searchsorted(a, h, side="right")

        index.ranges = whole
    else:  # format 1: every array read whole into memory
        z = {a: np.load(folder / f"{a}.npy") for a in LANDMARK_ARRAYS}
        meta = np.load(folder / "library.npz")
        index = FingerprintIndex(z["hashes"], z["tracks"], z["frames"], meta["content_hashes"], z["directory"])
    open_s = time.perf_counter() - t0
    after_open = status_kb()
    q = np.load(clips)
    from music_pipeline.identity.fingerprint import Fingerprint

    answers, lat, warm = [], [], []
    fps = [Fingerprint(q[f"h{i}"], q[f"f{i}"], CLIP_S) for i in range(int(q["n"]))]
    for fp in fps:  # cold: nothing of the index in memory (evicted above)
        t = time.perf_counter()
        m = index.identify(fp)
        lat.append(time.perf_counter() - t)
        answers.append(None if m is None else [int(m.track), round(m.offset_s, 2), int(m.votes)])
    after_cold = status_kb()
    for fp in fps:  # warm: the same clips again (their pages now cached)
        t = time.perf_counter()
        index.identify(fp)
        warm.append(time.perf_counter() - t)
    print(
        json.dumps(
            {
                "mode": mode,
                "open_s": open_s,
                "latency_ms": [x * 1000 for x in lat],
                "warm_latency_ms": [x * 1000 for x in warm],
                "kb_after_cold": after_cold,
                "answers": answers,
                "kb_before": before,
                "kb_after_open": after_open,
                "kb_after": status_kb(),
                "maxrss_kb": status_kb()["VmHWM"],  # (ru_maxrss would carry the parent's across fork + exec)
            }
        )
    )


def run_child(data: Path, mode: str, clips: Path) -> dict:
    cmd = [sys.executable, __file__, "--child", str(data), mode, str(clips)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def summarise(r: dict, planted: int, n_planted_clips: int) -> dict:
    lat = np.array(r["latency_ms"])
    ans = r["answers"]
    found = sum(a is not None and a[0] == planted for a in ans[:n_planted_clips])
    false = sum(a is not None for a in ans[n_planted_clips:])
    return {
        "mode": r["mode"],
        "open_s": round(r["open_s"], 3),
        "lookup_ms_p50": round(float(np.median(lat)), 1),
        "lookup_ms_p95": round(float(np.percentile(lat, 95)), 1),
        "first_lookup_ms": round(float(lat[0]), 1),
        "warm_lookup_ms_p50": round(float(np.median(r["warm_latency_ms"])), 1),
        "anon_mb_per_cold_lookup": round(
            (r["kb_after_cold"]["RssAnon"] - r["kb_after_open"]["RssAnon"]) / 1024 / len(lat), 2
        ),
        "file_mb_per_cold_lookup": round(
            (r["kb_after_cold"]["RssFile"] - r["kb_after_open"]["RssFile"]) / 1024 / len(lat), 2
        ),
        "planted_found": f"{found}/{n_planted_clips}",
        "held_out_matched": f"{false}/{len(ans) - n_planted_clips}",
        "rss_mb_after_open": round(r["kb_after_open"]["VmRSS"] / 1024, 1),
        "rss_mb_after_lookups": round(r["kb_after"]["VmRSS"] / 1024, 1),
        "anon_mb_after_lookups": round(r["kb_after"]["RssAnon"] / 1024, 1),
        "file_mb_after_lookups": round(r["kb_after"]["RssFile"] / 1024, 1),
        "peak_rss_mb": round(r["maxrss_kb"] / 1024, 1),
        "process_baseline_mb": round(r["kb_before"]["VmRSS"] / 1024, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--library", default="/work/dev_library")
    ap.add_argument("--tracks", type=int, default=100_000)
    ap.add_argument("--compare-tracks", type=int, default=10_000)
    ap.add_argument("--track-seconds", type=float, default=210.0)
    ap.add_argument("--real", type=int, default=24)
    ap.add_argument("--clips", type=int, default=20)
    ap.add_argument("--work", default="/tmp/bench_fingerprint_scale")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    rng = np.random.default_rng(args.seed)

    t0 = time.perf_counter()
    real = real_fingerprints(Path(args.library), args.real, args.seed)
    seconds = sum(fp.duration_s for _, _, fp in real)
    density = sum(len(fp.hashes) for _, _, fp in real) / seconds
    all_h = np.concatenate([fp.hashes for _, _, fp in real[1:]]).astype(np.int64)
    # the hash distribution of real music (tracks other than the planted one), smoothed so that a
    # value never seen still occurs now and then
    p = np.bincount(all_h, minlength=HASH_SPACE).astype(np.float64) + 0.05
    p /= p.sum()
    planted_path, planted_y, planted_fp = real[0]
    per_track = round(density * args.track_seconds)
    print(
        f"real material: {len(real)} files, {seconds / 60:.1f} min, {density:.1f} landmarks/s "
        f"(× {args.track_seconds:.0f} s = {per_track} a track); planted {planted_path.name} "
        f"({planted_fp.duration_s:.0f} s), {time.perf_counter() - t0:.0f} s",
        flush=True,
    )

    # clips: from the planted track at random places, then one from each held-out real track
    clips, starts = [], []
    for _ in range(args.clips):
        s = rng.uniform(0, planted_fp.duration_s - CLIP_S)
        starts.append(s)
        clips.append(planted_y[int(s * ANALYSIS_SR) : int((s + CLIP_S) * ANALYSIS_SR)])
    for _, y, fp in real[1:]:
        s = rng.uniform(0, fp.duration_s - CLIP_S)
        clips.append(y[int(s * ANALYSIS_SR) : int((s + CLIP_S) * ANALYSIS_SR)])
    fps = [fingerprint_signal(c, ANALYSIS_SR) for c in clips]
    clip_file = work / "clips.npz"
    np.savez(
        clip_file,
        n=len(fps),
        **{f"h{i}": f.hashes for i, f in enumerate(fps)},
        **{f"f{i}": f.frames for i, f in enumerate(fps)},
    )
    print(f"clips: {args.clips} of the planted track, {len(real) - 1} of held-out tracks", flush=True)

    results = {"density_landmarks_per_s": round(density, 1), "landmarks_per_track": per_track, "sizes": {}}
    for n_tracks in sorted({args.compare_tracks, args.tracks}):
        data = work / f"data_{n_tracks}"
        name = "synthetic"
        folder = DataLayout(data).fingerprint_index_dir / name
        t = time.perf_counter()
        n = write_index(folder, n_tracks, per_track, int(args.track_seconds / FRAME_S), p, planted_fp, args.seed)
        publish(data, name, n, n_tracks)
        disk = sum(f.stat().st_size for f in folder.iterdir())
        mean_hits = n / HASH_SPACE
        row = {
            "landmarks": n,
            "disk_gb": round(disk / 1e9, 2),
            "write_s": round(time.perf_counter() - t, 1),
            "mean_entries_per_hash_value": round(mean_hits, 1),
            "max_hits_per_hash": MAX_HITS_PER_HASH,
        }
        print(f"{n_tracks} tracks: {row}", flush=True)
        modes = ["mmap", "mmap_fault", "mmap_plain"] + (["load_whole"] if n_tracks == args.compare_tracks else [])
        for mode in modes:
            r = summarise(run_child(data, mode, clip_file), n_tracks, args.clips)
            row[mode] = r
            print(f"  {mode}: {r}", flush=True)
        results["sizes"][n_tracks] = row
        if not args.keep:
            shutil.rmtree(data, ignore_errors=True)
    print(json.dumps(results, indent=1))
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(*sys.argv[2:5])
    else:
        main()
