"""What both model APIs share and neither owns: training options, the run directory and its
files, the predict/evaluate/extract-features command line, VGG16 weight sources, input
checks and the models' shared constants.

Imported by `graph_api` and `keras_api` (and `benchmarks`); imports only `data_pipeline`,
never a model API.
"""
