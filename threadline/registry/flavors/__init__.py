"""Model flavors: one module per model format, found by name and loaded lazily."""

from threadline.registry.flavors.base import Flavor, LoadPolicy, ModelMeta, SavedFiles
from threadline.registry.flavors.catalog import detect_flavor, get_flavor, load_folder, save_folder

__all__ = ["Flavor", "LoadPolicy", "ModelMeta", "SavedFiles", "detect_flavor", "get_flavor",
           "load_folder", "save_folder"]
