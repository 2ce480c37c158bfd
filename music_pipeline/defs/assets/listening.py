"""group listening: the recommender trained on the listening history (music_pipeline/listening/)."""

import dagster as dg

from music_pipeline.defs.resources import MusicPipelineResource
from music_pipeline.defs.retraining import retraining_metadata
from music_pipeline.listening import recommender as rec

SIMILARITY_INDEX = dg.AssetKey("similarity_index")


@dg.asset(
    name=rec.MODEL_NAME,
    deps=[SIMILARITY_INDEX],
    kinds={"python", "numpy"},
    group_name="listening",
    owners=["team:music-pipeline"],
    code_version=rec.MODEL_VERSION,
    description=(
        "The hybrid recommender of `music-pipeline recommend` and the explorer's For you page: implicit ALS on the "
        "listening log (<data>/listening/events.jsonl; confidence from playing coefficients, skips as negatives) "
        "and a ridge regression from the similarity space to its factors, so tracks nobody played are scored from "
        "their audio. Retrained by build/nightly_rebuild when more than the retraining share of events arrived "
        "(`recommend` also retrains it itself when stale). Files in `<data>/models/listening/`."
    ),
)
def listening_model(context: dg.AssetExecutionContext, pipeline: MusicPipelineResource) -> dg.MaterializeResult:
    from music_pipeline.listening import service

    layout = pipeline.layout
    why = retraining_metadata(context, layout)
    lib = service.open_library(layout.root)
    model = service.train(layout.root, lib)  # records what it was trained on (models/staleness.py)
    context.log.info(f"listening model: {model.info}")
    return dg.MaterializeResult(
        metadata={
            **why,
            **{k: v for k, v in model.info.items()},
            "space": dg.MetadataValue.json(model.space),
            "path": dg.MetadataValue.path(str(layout.listening_model_dir)),
        }
    )
