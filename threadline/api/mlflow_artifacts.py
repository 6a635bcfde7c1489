"""MLflow's artifact proxy (`/api/2.0/mlflow-artifacts/artifacts/...`) over run artifacts.

The MLflow client resolves a run's `mlflow-artifacts:/<exp>/<run>/artifacts/<path>` to
`PUT` (upload), `GET` (download) and `GET ?path=` (list) here; each maps onto the run's
artifacts in Threadline (a data commit per upload, de-duplicated by the content store). A
logged model's `mlflow-artifacts:/<exp>/models/<model id>/artifacts/<path>` maps onto
`logged_models/<model id>/<path>` in the artifacts of the run that logged it.

Security (RELIABILITY.md, "Paths never escape"): the path is checked after Starlette's
decoding by `normalize_path` (`..`, absolute and Windows paths, NUL and control characters,
backslashes, over-long names), and a still-encoded dot, slash, backslash or NUL (`%2e`, `%2f`,
`%5c`, `%00`: a double-encoded path) is refused instead of being decoded a second time.
Uploads stream to a temporary file and are cut off with 413 at the size limit.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.background import BackgroundTask
from starlette.responses import FileResponse
from starlette.routing import Route

from threadline.api.http import JSONResponse, call, empty, limits, stores
from threadline.api.mlflow_logged_models import MODEL_LOCATION, resolve_location
from threadline.data.paths import normalize_path
from threadline.errors import InvalidArgument, NotFound
from threadline.serving.wire import PayloadTooLarge

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

    from threadline.tracking.store import TrackingStore

PREFIXES = ("/api/2.0/mlflow-artifacts/artifacts", "/ajax-api/2.0/mlflow-artifacts/artifacts")
#: bytes of an upload buffered before one write to the temporary file
_WRITE_BATCH = 1 << 20
_ENCODED = re.compile(r"%(2e|2f|5c|00)", re.IGNORECASE)
_LOCATION = re.compile(r"^(?P<exp>\d+)/(?P<run>[0-9a-f]{32})/artifacts(?:/(?P<rest>.*))?$")


def split_location(path: str) -> tuple[int, str, str]:
    """`<exp>/<run>/artifacts/<path>` -> (experiment id, run id, normalised artifact path)."""
    if _ENCODED.search(path):
        raise InvalidArgument(f"artifact path {path!r} holds an encoded '.', '/', '\\' or NUL; "
                              "send the path encoded once")
    match = _LOCATION.match(path.strip("/"))
    if match is None:
        raise InvalidArgument(f"artifact location {path!r} is not <experiment_id>/<run_id>/artifacts/<path>")
    return int(match["exp"]), match["run"], normalize_path(match["rest"] or "", allow_root=True)


def check_location(path: str) -> None:
    """Refuse a malformed run or logged-model location before any store is read."""
    match = None if _ENCODED.search(path) else MODEL_LOCATION.match(path.strip("/"))
    if match is None:
        split_location(path)
    else:
        normalize_path(match["rest"] or "", allow_root=True)


def locate(store: TrackingStore, location: str) -> tuple[str, str]:
    """(run id, normalised path in its artifacts) of a run's or a logged model's location."""
    if _ENCODED.search(location):
        split_location(location)  # raises, naming the encoded character
    found = resolve_location(store, location)
    if found is None:
        experiment, run_id, path = split_location(location)
    else:
        experiment, run_id, path = found[0], found[1], normalize_path(found[2], allow_root=True)
    info = store.get_run(run_id).info
    if info.experiment_id != experiment:
        raise NotFound(f"run {run_id} is not in experiment {experiment}")
    return run_id, path


def _list(store: TrackingStore, location: str) -> dict[str, Any]:
    run_id, path = locate(store, location)
    start = f"{path}/" if path else ""
    files = []
    for entry in store.list_artifacts(run_id, path):
        rel = entry["path"][len(start):] if entry["path"].startswith(start) else entry["path"]
        item: dict[str, Any] = {"path": rel.rpartition("/")[2] if entry["path"] == path else rel,
                                "is_dir": entry["is_dir"]}
        if entry["size"] is not None:
            item["file_size"] = entry["size"]
        files.append(item)
    return {"files": files}


async def list_artifacts(request: Request) -> Response:
    """GET ...artifacts?path=<exp>/<run>/artifacts/<dir>: the entries directly inside <dir>."""
    location = request.query_params.get("path", "")
    return JSONResponse(await call(_list, stores(request).tracking, location))


def _fetch(store: TrackingStore, location: str) -> tuple[Path, Path]:
    run_id, path = locate(store, location)
    if not path:
        raise InvalidArgument("name an artifact file to download; list a folder with ?path=")
    if not any(e["path"] == path and not e["is_dir"] for e in store.list_artifacts(run_id, path)):
        raise NotFound(f"run {run_id} has no artifact file {path!r}")
    scratch = Path(tempfile.mkdtemp(prefix="tl-api-dl-"))
    try:
        return scratch, store.download_artifacts(run_id, path, scratch)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise


async def download(request: Request) -> Response:
    """GET ...artifacts/<exp>/<run>/artifacts/<file>: the file's bytes, streamed from disk."""
    scratch, file = await call(_fetch, stores(request).tracking, request.path_params["path"])
    return FileResponse(file, media_type="application/octet-stream",
                        background=BackgroundTask(shutil.rmtree, scratch, ignore_errors=True))


def _commit(store: TrackingStore, location: str, file: Path) -> None:
    run_id, path = locate(store, location)
    folder, _, name = path.rpartition("/")
    if not name:
        raise InvalidArgument("name the artifact file to upload: PUT .../artifacts/<path>")
    target = file.with_name(name)
    file.rename(target)
    store.log_artifacts(run_id, target, folder)


async def upload(request: Request) -> Response:
    """PUT ...artifacts/<exp>/<run>/artifacts/<file>: stream the body in, commit it."""
    location = request.path_params["path"]
    check_location(location)  # refuse a bad path before reading the body
    limit = limits(request).max_upload
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"upload of {declared} bytes is over the limit of {limit} bytes")
    scratch = Path(await call(tempfile.mkdtemp, prefix="tl-api-up-"))
    try:
        body = scratch / "upload.part"
        size = 0
        pending: list[bytes] = []
        held = 0
        out = await call(body.open, "wb")
        try:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise PayloadTooLarge(f"upload is over the limit of {limit} bytes")
                pending.append(chunk)
                held += len(chunk)
                if held >= _WRITE_BATCH:  # disk writes happen in the pool, a batch at a time
                    await call(out.write, b"".join(pending))
                    pending, held = [], 0
            await call(out.write, b"".join(pending))
        finally:
            await call(out.close)
        await call(_commit, stores(request).tracking, location, body)
    finally:
        await call(shutil.rmtree, scratch, ignore_errors=True)
    return empty()


async def server_info(request: Request) -> Response:
    """/api/3.0/mlflow/server-info: what the client may use (no multipart transfers here)."""
    return JSONResponse({"store_type": "SqlStore", "workspaces_enabled": False,
                         "multipart_uploads_enabled": False, "multipart_downloads_enabled": False})


def routes() -> list[Route]:
    """The artifact proxy under both prefixes, and the server-info probe."""
    out = [Route("/api/3.0/mlflow/server-info", server_info, methods=["GET"])]
    for prefix in PREFIXES:
        out += [Route(prefix, list_artifacts, methods=["GET"]),
                Route(prefix + "/{path:path}", download, methods=["GET"]),
                Route(prefix + "/{path:path}", upload, methods=["PUT"])]
    return out
