"""Processes -> results.json: the worker that times one bundle of configurations, the runner
that interleaves bundles over repeats, the modes' steps, the replicas and the shard rates.
Raw runs only; what they mean is `benchmarks.analyse`'s.
"""
