"""The control-plane REST API: Threadline's own routes and the MLflow tracking/registry API."""
