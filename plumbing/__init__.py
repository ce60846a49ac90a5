"""The command-line and file plumbing every command uses: the error contract (`errors`), atomic
writes (`atomic`), progress lines (`progress`), TensorFlow's log level (`tf_logging`), PNG
figures (`figures`), run-directory locks (`locks`) and commands run side by side (`processes`).

The bottom of the project: imports nothing of it, and nothing heavier than matplotlib.
"""
