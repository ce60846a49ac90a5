"""Pure functions of results.json: statistics, the per-configuration summary, ratios, fits,
scaling and the verdict map. Imports no other wing.
"""
