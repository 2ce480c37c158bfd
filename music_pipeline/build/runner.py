"""Run the pipeline through Dagster from Python (what `music-pipeline build` does).

Runs are recorded in the Dagster instance at DAGSTER_HOME (default ``<data>/dagster_home``), so
``dagster dev`` / ``music-pipeline ui`` shows them with their partitions and metadata.

Order of a build: validate (library folder readable, data directory usable) before anything is
written; take the data directory's lock; record the library in ``<data>/library.json``; extract
new/changed tracks in batched ingest runs; train the models; render the HTML reports. While runs
execute, ``on_event`` receives :class:`RunEvent`s (steps starting and ending, progress, log lines)
read from the run's own event log, plus progress published in this process — the same lines the
Dagster UI shows, so the CLI's progress bar and the run log never disagree.
"""

import json
import os
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import pandas as pd
from filelock import FileLock, Timeout

from music_pipeline import progress as prog
from music_pipeline.artifacts import ensure_dir, read_parquet
from music_pipeline.defs.assets.features import PASS_SECONDS, RETRY_FAILED_TAG
from music_pipeline.defs.jobs import split_library_assets, track_asset_keys
from music_pipeline.defs.partitions import known_track_keys, plan_partitions
from music_pipeline.defs.resources import MusicPipelineResource
from music_pipeline.defs.retraining import RETRAIN_TAG, record_kept, stale_models
from music_pipeline.defs.sensors import RANGE_END, RANGE_START
from music_pipeline.layout import DataLayout
from music_pipeline.settings import SOURCE_RECORD, Settings, library_problem, record_library, use_dagster_home

DAGSTER_YAML = Path(__file__).parent.parent / "defs" / "dagster.yaml"  # the instance settings it ships
POLL_S = 0.5


class BuildLocked(RuntimeError):
    pass


class BuildInvalid(ValueError):
    """The build cannot start (bad settings); nothing was written."""


@dataclass
class FailedCheck:
    asset: str
    check: str
    severity: str  # ERROR | WARN
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.asset}/{self.check} ({self.severity})" + (f": {self.detail}" if self.detail else "")


@dataclass
class BuildSummary:
    tracks: int
    extracted_runs: int
    embedded: int
    skipped: pd.DataFrame
    failed_assets: list[str] = field(default_factory=list)
    run_ids: list[str] = field(default_factory=list)
    failed_checks: list[FailedCheck] = field(default_factory=list)  # ERROR severity: the build failed
    warned_checks: list[FailedCheck] = field(default_factory=list)  # WARN severity: reported only
    retried: int = 0  # recorded failures analysed again (retry_failed)
    notes: list[str] = field(default_factory=list)
    pass_seconds: dict[str, float] = field(default_factory=dict)  # CPU seconds per per-track pass

    @property
    def ok(self) -> bool:
        return not self.failed_assets and not self.failed_checks


@dataclass
class RunEvent:
    kind: str  # plan | run_start | run_end | step_start | step_end | progress | log
    run: str  # extract | tables | models
    step: str | None = None
    text: str = ""
    ok: bool = True
    progress: prog.Progress | None = None
    steps: int | None = None  # run_start: asset steps in the run; plan: tracks to analyse


def ensure_dagster_home(settings: Settings) -> Path:
    """Point DAGSTER_HOME at the data directory's instance (unless the user set one) and give it
    the shipped dagster.yaml on first use."""
    home = use_dagster_home(settings.dagster_home)
    home.mkdir(parents=True, exist_ok=True)
    cfg = home / "dagster.yaml"
    if not cfg.exists() and DAGSTER_YAML.exists():
        # the event log's folder written out: an instance opened from this directory alone (no
        # DAGSTER_HOME in its environment) finds the same events
        marker = "  class: BatchingSqliteEventLogStorage\n"
        text = DAGSTER_YAML.read_text()
        if marker in text:
            text = text.replace(
                marker, f"{marker}  config:\n    base_dir: {json.dumps(str(home / 'history' / 'runs'))}\n"
            )
        cfg.write_text(text)
    return home


def data_dir_lock(settings: Settings) -> FileLock:
    # serialises builds from this host; on a shared object store the run queue is the guard
    ensure_dir(settings.data_dir)
    return FileLock(str(DataLayout(settings.data_dir).lock_path))


def validate(settings: Settings) -> Path:
    """Everything a build needs, checked before anything is written. Returns the library folder;
    raises LibraryUnavailable / LibraryNotGiven / BuildInvalid."""
    library = settings.check_library()
    if settings.workers < 1:
        raise BuildInvalid(f"workers must be at least 1, got {settings.workers}")
    data = settings.data_dir
    if isinstance(data, Path):
        if data.exists() and not data.is_dir():
            raise BuildInvalid(f"the data directory {data} is a file, not a folder")
        existing = next((p for p in [data, *data.parents] if p.exists()), None)
        if existing is not None and not os.access(existing, os.W_OK):
            raise BuildInvalid(f"the data directory {data} cannot be created or written ({existing} is not writable)")
    return library


def run_build(
    settings: Settings,
    wait_for_lock_s: float = 0.0,
    log=print,
    models: bool = True,
    retry_failed: bool = False,
    on_event: Callable[[RunEvent], None] | None = None,
    recorded_by: str = "build",
    retrain: bool = False,
) -> BuildSummary:
    """Register partitions for the library (per-track mode), run `ingest_tracks` over batched
    ranges of new/changed tracks (bucket mode: of the buckets holding them), then retrain the
    library models that are stale (``models/staleness.py``; every model with ``retrain``; none
    when ``models`` is false). When nothing changed and no model is stale, nothing runs.
    ``retry_failed`` analyses the tracks with a recorded failure again. Holds an exclusive lock
    on the data directory."""
    from music_pipeline.definitions import build_definitions

    library = validate(settings)
    ensure_dagster_home(settings)
    lock = data_dir_lock(settings)
    try:
        lock.acquire(timeout=wait_for_lock_s)
    except Timeout:
        raise BuildLocked(
            f"another build is running on {settings.data_dir} (lock {lock.lock_file}); "
            "wait for it to finish or use another --data directory"
        ) from None
    try:
        if settings.library_source != SOURCE_RECORD:
            record_library(settings.data_dir, library, settings.library_source, recorded_by)
        return _run_build_locked(settings, build_definitions, log, models, retry_failed, on_event, retrain)
    finally:
        lock.release()


def _never_materialized(instance, keys) -> list:
    return [k for k in keys if instance.get_latest_materialization_event(k) is None]


def _root_error(err):
    """The error behind Dagster's wrappers ("Exceeded max_retries", "Error occurred while executing")."""
    while (
        err is not None
        and err.cause is not None
        and (err.message.startswith("Exceeded max_retries") or "Error occurred while" in err.message.split("\n", 1)[0])
    ):
        err = err.cause
    return err


def _failures(result) -> list[str]:
    out = []
    last_retry_error = {}
    for ev in result.all_events:
        if ev.event_type_value == "STEP_UP_FOR_RETRY" and ev.event_specific_data is not None:
            last_retry_error[ev.step_key] = getattr(ev.event_specific_data, "error", None)
        if ev.is_step_failure:
            err = _root_error(ev.event_specific_data.error if ev.event_specific_data else None)
            if (
                err is not None
                and err.message.startswith("Exceeded max_retries")
                and last_retry_error.get(ev.step_key) is not None
            ):
                err = _root_error(last_retry_error[ev.step_key])
            lines = err.message.strip().splitlines() if err else ["failed"]
            shown = "\n    ".join(lines[:12]) + (f"\n    … {len(lines) - 12} more lines" if len(lines) > 12 else "")
            out.append(f"{ev.step_key}: {shown}")
    return out


def _pass_seconds(result, into: dict[str, float]) -> None:
    """Add the per-track passes' CPU seconds the run's steps reported (``PASS_SECONDS``): once per
    step, though a step's metadata stands on each of its assets and partitions."""
    seen = set()
    for ev in result.get_asset_materialization_events():
        value = ev.event_specific_data.materialization.metadata.get(PASS_SECONDS)
        if value is None or ev.step_key in seen:
            continue
        seen.add(ev.step_key)
        for name, seconds in (getattr(value, "value", None) or {}).items():
            into[name] = into.get(name, 0.0) + float(seconds)


def _checks(result) -> tuple[list[FailedCheck], list[FailedCheck]]:
    failed, warned = [], []
    for ev in result.get_asset_check_evaluations():
        if ev.passed:
            continue
        detail = "; ".join(f"{k}={_md_value(v)}" for k, v in list(ev.metadata.items())[:4])
        fc = FailedCheck(ev.asset_key.to_user_string(), ev.check_name, ev.severity.value, detail)
        (failed if ev.severity == dg.AssetCheckSeverity.ERROR else warned).append(fc)
    return failed, warned


def _md_value(v) -> str:
    value = getattr(v, "value", v)
    text = f"{value:.3g}" if isinstance(value, float) else str(value).replace("\n", " ")
    return text if len(text) <= 80 else text[:77] + "…"


class _RunWatcher:
    """Reads a run's event log while it executes and turns it into RunEvents."""

    def __init__(self, instance, run_id: str, run: str, on_event: Callable[[RunEvent], None], asset_steps: set[str]):
        self.instance, self.run_id, self.run = instance, run_id, run
        self.on_event, self.asset_steps = on_event, asset_steps
        self.cursor = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"watch-{run}", daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(10)
        self._poll()  # whatever arrived after the last poll

    def _loop(self):
        while not self._stop.wait(POLL_S):
            try:
                self._poll()
            except Exception:  # noqa: BLE001, S110 - the storage is busy being written: next time
                pass

    def _poll(self):
        from dagster._core.events import DagsterEventType

        conn = self.instance.event_log_storage.get_records_for_run(self.run_id, cursor=self.cursor)
        self.cursor = conn.cursor
        for record in conn.records:
            entry = record.event_log_entry
            step = entry.step_key
            if entry.is_dagster_event:
                kind = entry.dagster_event.event_type_value
                if step not in self.asset_steps:
                    continue
                if kind == DagsterEventType.STEP_START.value:
                    self.on_event(RunEvent("step_start", self.run, step))
                elif kind in (DagsterEventType.STEP_SUCCESS.value, DagsterEventType.STEP_FAILURE.value):
                    self.on_event(RunEvent("step_end", self.run, step, ok=kind == DagsterEventType.STEP_SUCCESS.value))
            elif entry.user_message:
                p = prog.parse_line(entry.user_message)
                if p is not None:
                    self.on_event(RunEvent("progress", self.run, step, progress=p))
                else:
                    self.on_event(RunEvent("log", self.run, step, text=entry.user_message))


def _asset_steps(defs, keys) -> set[str]:
    wanted = set(keys)
    return {a.node_def.name for a in defs.assets if hasattr(a, "keys") and set(a.keys) & wanted}


def _run_build_locked(
    settings: Settings, build_definitions, log, models: bool, retry_failed: bool, on_event, retrain: bool = False
) -> BuildSummary:
    pipeline = MusicPipelineResource(
        data_dir=str(settings.data_dir), library_dir=str(settings.require_library()), workers=settings.workers
    )
    defs = build_definitions(pipeline)
    ingest, rebuild = defs.resolve_job_def("ingest_tracks"), defs.resolve_job_def("rebuild_models")
    follow, model_keys = split_library_assets(defs.assets)
    track_keys = track_asset_keys(defs.assets)
    instance = dg.DagsterInstance.get()
    scan = pipeline.scan()
    store = pipeline.store
    analysed = pipeline.analysed_hashes(retry_failed=retry_failed)
    retried = (
        len({t.content_hash for t in scan.tracks if t.content_hash} & store.failed_hashes()) if retry_failed else 0
    )
    planned = plan_partitions(
        instance,
        pipeline.partitioning,
        scan,
        lambda t: bool(t.content_hash) and t.content_hash not in analysed,
        track_keys,
        known=known_track_keys(pipeline.layout.manifest_path),
    )
    planned.apply(instance)
    plan = planned.sync
    again = f", {retried} recorded failures retried" if retry_failed else ""
    buckets = (
        f", in {len(plan.buckets)} of {pipeline.partitioning.buckets} buckets" if pipeline.partitioning.buckets else ""
    )
    log(
        f"library {settings.library_dir}: {len(scan.tracks)} tracks (+{len(plan.to_add)} new, -{len(plan.to_remove)} removed, {len(plan.to_run)} to analyse{again}{buckets})"
    )
    quiet_console = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}  # the CLI prints its own summary
    tags = {"music_pipeline/trigger": "cli build"}
    if retry_failed:
        tags[RETRY_FAILED_TAG] = "true"
    failed, run_ids, failed_checks, warned_checks = [], [], [], []
    pass_seconds: dict[str, float] = {}
    emit = on_event or (lambda _e: None)
    emit(RunEvent("plan", "extract", steps=len(plan.to_run)))

    def run(job, name: str, selection_keys, **kwargs):
        run_id = str(uuid.uuid4())
        steps = _asset_steps(defs, selection_keys)
        emit(RunEvent("run_start", name, steps=len(steps)))

        def relay(item):  # progress published by steps running in this process
            if isinstance(item, prog.Progress):
                emit(RunEvent("progress", name, progress=item))

        with prog.listen(relay), _RunWatcher(instance, run_id, name, emit, steps):
            result = job.execute_in_process(
                run_config=quiet_console, instance=instance, raise_on_error=False, run_id=run_id, **kwargs
            )
        run_ids.append(result.run_id)
        failed.extend(_failures(result))
        _pass_seconds(result, pass_seconds)
        bad, warn = _checks(result)
        failed_checks.extend(bad)
        warned_checks.extend(warn)
        emit(RunEvent("run_end", name, ok=result.success and not bad))

    all_ingest = [*track_keys, *follow]
    for n, (start, end) in enumerate(plan.ranges, 1):
        # every batch extracts its tracks; only the last also refreshes the library-wide tables,
        # scores and index, which would otherwise be rebuilt once per 500 tracks
        selection = None if n == len(plan.ranges) else track_keys
        run(
            ingest,
            "extract",
            selection or all_ingest,
            asset_selection=selection,
            tags={**tags, RANGE_START: start, RANGE_END: end},
        )
    if not plan.ranges and (plan.changed or _never_materialized(instance, follow)):
        run(ingest, "tables", follow, asset_selection=follow, tags=tags)
    if models and model_keys and failed:
        log("models not retrained: the track runs failed (see below)")
    elif models and model_keys:
        # retrain only what is stale; the others keep serving new tracks, with the reason recorded
        stale, verdicts = (model_keys, {}) if retrain else stale_models(defs, model_keys, pipeline.layout)
        for key in model_keys:
            if key not in stale:
                record_kept(instance, key, verdicts[key])
        kept = [k.to_user_string() for k in model_keys if k not in stale]
        if stale:
            names = ", ".join(k.to_user_string() for k in stale)
            log(f"training the library models ({names}) …" + (f"; kept: {', '.join(kept)}" if kept else ""))
            run(
                rebuild,
                "models",
                stale,
                asset_selection=stale,
                tags={**tags, RETRAIN_TAG: "forced" if retrain else "stale"},
            )
        elif plan.changed:
            log(
                f"models kept (too little changed to retrain: {verdicts[model_keys[0]].why}); build --retrain forces it"
            )
    layout = pipeline.layout
    problem = library_problem(settings.library_dir)
    if problem:  # an unmounted disk, a moved folder: say so once, not one line per track
        failed.insert(
            0,
            f"{problem} any more: the library became unavailable during the build. The tracks it could not "
            "read are not recorded as broken; build again when the folder is back.",
        )
    notes = []
    try:
        from music_pipeline.reports import write_reports

        write_reports(layout.root)
    except Exception as exc:  # noqa: BLE001 - reports are a view; a failure to draw them must not fail the build
        notes.append(f"reports/index.html not written: {type(exc).__name__}: {exc}")
    skipped = (
        read_parquet(layout.skipped_path)
        if layout.skipped_path.exists()
        else pd.DataFrame(columns=["relpath", "reason"])
    )
    embedded = len(read_parquet(layout.embeddings_path, columns=["key"])) if layout.embeddings_path.exists() else 0
    return BuildSummary(
        len(scan.tracks),
        len(plan.ranges),
        embedded,
        skipped,
        failed,
        run_ids,
        failed_checks,
        warned_checks,
        retried,
        notes,
        pass_seconds,
    )
