"""Graph IR and the bundle manifest."""

from eedge.ir.graph import Dim, Graph, Node, TensorInfo

__all__ = ["Dim", "Graph", "Node", "TensorInfo"]
