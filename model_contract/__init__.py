"""What both model implementations must agree on: the shared constants (head widths,
parameter counts, Keras's batch-norm and RMSprop defaults), the input each model accepts, the
overhead study's small models and where VGG16 weights come from.

Imported by `graph_api`, `keras_api`, `api_runs` and `benchmarks`; imports only `data_pipeline`
and `plumbing`.
"""
