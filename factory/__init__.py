"""factory: OpenStack Trove guest images built as a stack of cached layers."""

from pathlib import Path

__version__ = "0.1.0"

# The repository's data folders sit beside the package (editable install or
# the factory's own container image, which copies the whole tree).
HOME = Path(__file__).resolve().parent.parent
ELEMENTS_DIR = HOME / "elements"
LAYERS_DIR = HOME / "layers"
CONTAINERS_DIR = HOME / "containers"
