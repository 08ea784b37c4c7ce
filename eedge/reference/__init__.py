"""Reference executors: numpy definitions of what a TFLite-dialect graph computes.

The int8 path reproduces TFLite Micro's integer arithmetic exactly; it is
the oracle generated code and other runtimes are compared against.
"""
