"""Model serving: deployments, the HTTP app, routing, batching, caching, the prediction log."""

from threadline.serving.deployments import Deployment, Deployments

__all__ = ["Deployment", "Deployments"]
