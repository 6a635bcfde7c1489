"""The model registry: models, versions, aliases with history, flavors, signatures, gates."""

from threadline.registry.errors import GateFailed, UntrustedModel
from threadline.registry.records import AliasEntry, ModelVersion, RegisteredModel
from threadline.registry.registry import ModelRegistry

__all__ = ["AliasEntry", "GateFailed", "ModelRegistry", "ModelVersion", "RegisteredModel",
           "UntrustedModel"]
