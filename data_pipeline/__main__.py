import sys

from .tf_logging import quiet_tensorflow_logs

quiet_tensorflow_logs()  # before anything imports TensorFlow

from .cli import main  # noqa: E402

sys.exit(main())
