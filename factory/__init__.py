"""factory: OpenStack Trove guest images built as a stack of cached layers."""

from pathlib import Path

__version__ = "0.1.0"


def _data_dir(name: str) -> Path:
    """A data folder: inside the package when installed from a wheel (the
    build maps the top-level folders to factory/data/), else beside the
    package (a checkout, an editable install, the factory's container image)."""
    installed = Path(__file__).resolve().parent / "data" / name
    return installed if installed.is_dir() else Path(__file__).resolve().parent.parent / name


ELEMENTS_DIR = _data_dir("elements")
LAYERS_DIR = _data_dir("layers")
CONTAINERS_DIR = _data_dir("containers")
