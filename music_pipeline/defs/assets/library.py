"""group library: the scan of the music folder."""

import dagster as dg

from music_pipeline.artifacts import write_parquet
from music_pipeline.defs.resources import MusicPipelineResource


@dg.asset(
    group_name="library",
    kinds={"python", "parquet"},
    owners=["team:music-pipeline"],
    code_version="1",
    description=(
        "The scan of the library folder: one row per audio file with its track key (the `tracks` "
        "partition key), relative path, label, group, size, modification time and content hash. "
        "Files that cannot be read are listed with the reason. Parquet at "
        "`<data>/tables/library_manifest.parquet`."
    ),
)
def library_manifest(context: dg.AssetExecutionContext, pipeline: MusicPipelineResource) -> dg.MaterializeResult:
    scan = pipeline.scan()
    df = scan.to_frame()
    path = write_parquet(pipeline.layout.manifest_path, df)
    dupes = scan.duplicates()
    for relpath, reason in scan.problems:
        context.log.warning(f"{relpath}: {reason}")
    labels = df["label"].fillna("(unlabelled)").value_counts()
    return dg.MaterializeResult(
        metadata={
            "library": dg.MetadataValue.path(str(scan.root)),
            "path": dg.MetadataValue.path(str(path)),
            "tracks": len(df),
            "unreadable": int(df["scan_error"].notna().sum()),
            "duplicate_contents": len(dupes),
            "labels": dg.MetadataValue.md(labels.to_frame("tracks").to_markdown()),
            "problems": dg.MetadataValue.md("\n".join(f"- `{p}`: {r}" for p, r in scan.problems) or "none"),
        }
    )
