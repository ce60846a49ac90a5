from plumbing.errors import exit_process
from plumbing.tf_logging import import_tensorflow_quietly, quiet_tensorflow_logs

quiet_tensorflow_logs()  # before anything imports TensorFlow
import_tensorflow_quietly()

from keras_api.cli import main  # noqa: E402

exit_process(main())
