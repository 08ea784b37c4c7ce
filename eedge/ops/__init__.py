"""Operators added through the registry: one module per operator family.

See :mod:`eedge.ops.registry` for why, and for what each path asks of an op.
"""
