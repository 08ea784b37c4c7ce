"""Cascades of independent models: whole models as the stages of one bundle.

A cascade bundle is an ordinary multi-exit bundle whose stage k is member
model k, each reading the original input. The members are merged into one
multi-output graph with a shared input (:mod:`eedge.cascade.merge_onnx`,
:mod:`eedge.cascade.merge_graph`), and the normal export pipeline partitions
it: every member's nodes feed only its own output, so partitioning gives one
stage per member, and everything that works on a multi-exit bundle (int8,
calibration, the runtimes, the C runtime, split) works on it unchanged.
"""

from eedge.cascade.build import build_cascade

__all__ = ["build_cascade"]
