"""eedge: deploy early-exit (multi-exit) neural networks to edge devices.

The package is a pipeline around one graph IR: frontends read a model into
:class:`eedge.ir.Graph`, passes partition it into per-exit stages, backends
write artifacts into a *bundle* directory, and runtimes execute the bundle
as a cascade that stops at the first confident exit.
"""

__version__ = "0.1.0"
