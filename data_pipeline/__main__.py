from .errors import exit_process
from .tf_logging import quiet_tensorflow_logs

quiet_tensorflow_logs()  # before anything imports TensorFlow

from .cli import main  # noqa: E402

exit_process(main())
