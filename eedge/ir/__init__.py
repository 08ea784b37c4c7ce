"""Graph IR and the bundle manifest."""

from eedge.ir.graph import Dim, Graph, Node, QuantParams, TensorInfo

__all__ = ["Dim", "Graph", "Node", "QuantParams", "TensorInfo"]
