"""Throughput benchmarks: the input pipeline now; the graph-vs-Keras harness builds on it."""
