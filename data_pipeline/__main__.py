from plumbing.errors import exit_process
from plumbing.tf_logging import quiet_tensorflow_logs

quiet_tensorflow_logs()  # before anything imports TensorFlow

from data_pipeline.cli import main  # noqa: E402

exit_process(main())
