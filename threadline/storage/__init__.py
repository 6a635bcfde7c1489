"""Bytes: content-defined chunking, hashing, compression, packs, and the ObjectStore backends."""

from threadline.storage.backend import ObjectInfo, ObjectStore, open_object_store
from threadline.storage.cas import ContentStore, StoredFile

__all__ = ["ContentStore", "ObjectInfo", "ObjectStore", "StoredFile", "open_object_store"]
