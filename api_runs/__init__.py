"""What a run of either API shares: training options, the run directory and its files, the
`train | extract-features | predict | evaluate` command line, and the devices and cluster a
run trains on.

Imported by `graph_api` and `keras_api` (and `benchmarks`); never imports a model API.
"""
