"""Export a query's items for retraining, streamed (COCO, JSONL or YOLO; see ``export``).

(No ``from __future__ import annotations`` here: FastAPI reads the endpoint's annotations.)
"""

import json
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import StreamingResponse

from api.deps import QueryRead, read_query
from api.models import ExportRequest
from api.routes import error_responses
from export.run import Export, selection_for
from export.spec import ExportSpec, Sampling

router = APIRouter(tags=["export"])
ExportQuery = Annotated[
    QueryRead[ExportRequest], Depends(read_query(ExportRequest, ranked="an export"))
]
STATEMENT_HEADER = "X-Autotag-Export"
_MEDIA = {True: "application/zip", False: "application/x-ndjson"}


@router.post(
    "/export",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "The export, streamed: a ZIP (coco, yolo) or JSON lines (jsonl). The"
            f" `{STATEMENT_HEADER}` header states what it contains (bundles also hold it in"
            " `export.json`).",
            "content": {media: {} for media in _MEDIA.values()},
        },
        **error_responses(400, 401),
    },
    summary="Stream a query's items as COCO, JSONL or YOLO, all of them or a sample",
)
async def export(q: ExportQuery) -> StreamingResponse:
    body = q.body
    sampling = None
    if body.sample is not None:
        sampling = Sampling(body.sample.strategy, body.sample.n, body.sample.seed)
    spec = ExportSpec(
        query=q.parsed.canonical,
        format=body.format,
        content=body.content,
        training_set=body.training_set,
        sampling=sampling,
        score_scale=body.score_scale,
        slices=q.parsed.slices,
    )
    job = Export(q.es, q.settings.index, spec, selection_for(q.parsed.ast, spec))
    await job.start()  # an unreachable cluster is still an error envelope, not a broken file
    bundle = body.format.is_bundle
    name = f"autotag-export-{body.format.value}.{'zip' if bundle else 'jsonl'}"
    headers = {
        "Content-Disposition": f'attachment; filename="{name}"',
        STATEMENT_HEADER: json.dumps(spec.statement(), ensure_ascii=True),
    }
    return StreamingResponse(job.chunks(), media_type=_MEDIA[bundle], headers=headers)
