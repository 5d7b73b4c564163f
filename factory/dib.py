"""`factory dib`: a disk-image-create command line, built as cached layers.

The options are read as disk-image-create reads them (`dib_cli`), the
element list is cut into layers (`dib_cut`), the environment is read as for
`factory build`, and the image lands where disk-image-create puts it:
`-o NAME` gives NAME.qcow2 (NAME.<type> for each -t), with NAME.<type>.sha256
and NAME.manifest.json beside, and the same lines disk-image-create prints
("Image file NAME.qcow2 created...", "Build completed successfully").
The keyed artifact stays in the factory's state folder, so an unchanged
command line assembles nothing a second time; NAME.* are copies of it.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

from factory import log
from factory.dib_cli import DibRun
from factory.dib_cut import Cut, cut
from factory.hashing import file_hash
from factory.settings import state_dir
from factory.target import Flags

_log = log.get("dib")


def flags_for(run: DibRun, the_cut: Cut, implied: set[str]) -> Flags:
    """The factory's flags for this command line (flags rank above every
    exported variable, as disk-image-create's options do)."""
    return Flags(
        distro=the_cut.distro, datastore=the_cut.datastore, arch=run.arch,
        elements=list(the_cut.extra_elements(implied)), packages=list(run.packages),
        env=[f"{k}={v}" for k, v in run.env.items()], image_size=run.image_size,
        formats=list(run.formats), output=str(state_dir() / "dib-artifacts"),
    )


def plan_cut(run: DibRun, paths: list[Path]) -> Cut:
    from factory.catalog import catalog
    from factory.layers import load_dib_rules

    return cut(run.elements, catalog(paths), paths, load_dib_rules())


def implied_elements() -> set[str]:
    from factory.layers import load_dib_rules

    return set((load_dib_rules().get("cut") or {}).get("implied") or ())


def mode_note(target, the_cut: Cut) -> str | None:
    """In container mode the named datastore element is not what installs the datastore."""
    if target.mode != "container":
        return None
    return (f"{the_cut.distro}-{the_cut.datastore}: {target.agent.describe()} runs {the_cut.datastore} in a container "
            "(container-datastore); FACTORY_AGENT_SOURCE=pypi:13.0.1 installs the element's packages instead")


def print_cut(the_cut: Cut) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"element list -> layers ({the_cut.distro}, datastore {the_cut.datastore})", title_justify="left")
    for col in ("element", "layer", "why"):
        table.add_column(col)
    for p in the_cut.placed:
        table.add_row(p.element, p.layer, p.why)
    Console().print(table)


def place_outputs(manifest: Path, stem: str, checksum: bool) -> list[Path]:
    """NAME.<type> (+ .sha256, .md5 with --checksum) and NAME.manifest.json,
    copied from the keyed artifact (a copy: the user's file may be changed
    without touching the cached one). An older, different NAME.<type> is
    renamed with a timestamp first, as disk-image-create does
    (OVERWRITE_OLD_IMAGE=1: replaced); the same image is left as it is."""
    man = json.loads(manifest.read_text())
    Path(stem).parent.mkdir(parents=True, exist_ok=True)
    written = []
    for fmt, image in sorted(man["images"].items()):
        src, dest = manifest.parent / image["file"], Path(f"{stem}.{fmt}")
        same = dest.is_file() and file_hash(dest) == image["sha256"]
        if dest.exists() and not same and os.environ.get("OVERWRITE_OLD_IMAGE", "0") == "0":
            old = dest.with_name(f"{Path(stem).name}-{time.strftime('%Y.%m.%d-%H.%M.%S')}.{fmt}")
            print(f"Old image found. Renaming it to {old}", flush=True)
            dest.rename(old)
        if not same:
            shutil.copyfile(src, dest)
        Path(f"{dest}.sha256").write_text(f"{image['sha256']}  {dest.name}\n")
        if checksum:
            Path(f"{dest}.md5").write_text(f"{file_hash(dest, 'md5')}  {dest.name}\n")
        image["file"] = dest.name
        written.append(dest)
    Path(f"{stem}.manifest.json").write_text(json.dumps(man, indent=2, sort_keys=True) + "\n")
    return written
