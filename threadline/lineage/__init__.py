"""The lineage graph: where every commit, run, model and prediction came from."""

from threadline.lineage.graph import Edge, LineageGraph, Node

__all__ = ["Edge", "LineageGraph", "Node"]
