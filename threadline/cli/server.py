"""`threadline server`: serve the home's REST API (Threadline's own and MLflow's); delegates to api."""

from __future__ import annotations

from typing import Annotated

import typer

from threadline.cli.output import err_console


def server(
    host: Annotated[str, typer.Option(help="Address to bind; 127.0.0.1 keeps it on this machine.")]
    = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 5000,
    workers: Annotated[int, typer.Option(help="Worker processes.")] = 1,
    access_log: Annotated[bool, typer.Option("--access-log", help="Log every request.")] = False,
    max_upload: Annotated[int, typer.Option(help="Largest artifact upload, in bytes.")] = 1 << 30,
    auth: Annotated[bool, typer.Option("--auth", help="Require a bearer token on loopback too "
                                       "(always required off loopback).")] = False,
    monitor: Annotated[bool, typer.Option("--monitor", help="Run the monitoring policies on their "
                                          "intervals.")] = False,
) -> None:
    """Serve the Threadline API and the MLflow tracking/registry API (MLFLOW_TRACKING_URI=http://HOST:PORT)."""
    from threadline.api.server import serve

    err_console.print(f"serving the Threadline and MLflow APIs on http://{host}:{port}")
    serve(host, port, workers=workers, access_log=access_log, max_upload=max_upload, auth=auth,
          monitor=monitor)

