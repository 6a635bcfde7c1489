"""The model registry: models, versions, aliases with history, flavors, signatures, gates."""
