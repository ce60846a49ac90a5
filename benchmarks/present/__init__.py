"""What a person reads: report.md, results.csv, the PNG plots and the comparison of two
results files, from `benchmarks.analyse`'s numbers.
"""
