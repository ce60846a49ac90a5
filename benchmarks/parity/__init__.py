"""The second experiment: do the two APIs train to the same results (same start, seeds,
TOST)? Runs through the APIs' command lines.
"""
