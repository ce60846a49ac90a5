from plumbing.errors import exit_process
from plumbing.tf_logging import import_tensorflow_quietly, quiet_tensorflow_logs

quiet_tensorflow_logs()  # before anything imports TensorFlow
import_tensorflow_quietly()

from graph_api.graph import use_tf1_runtime  # noqa: E402

use_tf1_runtime()  # this process is a TF1 program: graph mode, reference variables, control flow v1

from graph_api.cli import main  # noqa: E402

exit_process(main())
