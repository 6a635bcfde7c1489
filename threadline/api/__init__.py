"""The control-plane REST API: Threadline's own routes and the MLflow tracking/registry API."""

from threadline.api.app import create_app

__all__ = ["create_app"]
