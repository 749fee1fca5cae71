"""The Python environment that the local Triton's python backend runs the CPU models in.

The python backend stub shipped in the `nvidia-pytriton` wheel is compiled against NumPy 1's C
API: under NumPy 2 (the gateway's virtualenv) it reads input tensors as zeros. So the CPU models
run in a separate virtualenv with NumPy 1 and the same ONNX Runtime version as the gateway (so both
runtimes compute the same numbers), which Triton activates through the model's EXECUTION_ENV_PATH.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import venv
from importlib import metadata
from pathlib import Path

log = logging.getLogger(__name__)

MARKER = "transferd-requirements.txt"


def requirements() -> list[str]:
    """What the CPU models import: NumPy 1 for the stub, the gateway's own ONNX Runtime."""
    return ["numpy>=1.26,<2", f"onnxruntime=={metadata.version('onnxruntime')}"]


def ensure_python_env(path: Path) -> Path:
    """Creates (or reuses) the virtualenv at `path` with `requirements()` installed.

    It is reused when it was built for the same requirements; otherwise it is rebuilt, so that an
    upgrade of the gateway's ONNX Runtime reaches the Triton models too.

    Returns:
        The absolute path of the environment (for EXECUTION_ENV_PATH).
    """
    path = path.resolve()
    wanted = "\n".join(requirements()) + "\n"
    marker = path / MARKER
    if marker.exists() and marker.read_text() == wanted and (path / "bin" / "activate").exists():
        return path
    log.info("creating the Triton python backend environment in %s", path)
    # Same interpreter as the gateway: the stub embeds this Python's libpython (devtools.triton.local).
    venv.EnvBuilder(clear=True, with_pip=True).create(path)
    subprocess.run(
        [str(path / "bin" / "python"), "-m", "pip", "install", "--quiet", *requirements()],
        check=True,
    )
    marker.write_text(wanted)
    return path


def main() -> None:
    """`python -m devtools.triton.python_env PATH` (used by `make setup`)."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if len(sys.argv) != 2:
        sys.exit(f"usage: {sys.argv[0]} PATH")
    print(ensure_python_env(Path(sys.argv[1])))


if __name__ == "__main__":
    main()
