import sys

from data_pipeline.tf_logging import import_tensorflow_quietly, quiet_tensorflow_logs

quiet_tensorflow_logs()  # before anything imports TensorFlow
import_tensorflow_quietly()

from .cli import main  # noqa: E402

sys.exit(main())
