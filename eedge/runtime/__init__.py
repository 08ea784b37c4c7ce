"""Python runtimes that execute a bundle's stages as an early-exit cascade."""

from eedge.runtime.cascade import Cascade, CascadeResult

__all__ = ["Cascade", "CascadeResult"]
