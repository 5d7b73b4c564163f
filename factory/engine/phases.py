"""DIB's phase contract: the hooks tree a layer runs, and the environment its
hooks see, as disk-image-create lays them out.

Hooks tree (TMP_HOOKS_PATH): every element visible to the layer contributes
its environment.d, bin/ and other folders; only the elements the layer runs
contribute phase folders. Two elements with the same hook name in one folder
are an error naming both, as in DIB.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from factory.elements import Element, dib_lib_dir
from factory.errors import FactoryError
from factory.layers import ALL_PHASES
from factory.reproducible import source_date_epoch

PHASE_DIRS = frozenset(f"{p}.d" for p in ALL_PHASES)
SKIPPED_DIRS = frozenset({"tests", "test-elements", "__pycache__"})

# Paths inside the containers.
HOOKS_IN_BUILDER = "/tmp/factory/hooks"
TARGET_IN_BUILDER = "/tmp/factory/mnt"
WORK_IN_BUILDER = "/tmp/factory/work"
CACHE_IN_BUILDER = "/tmp/factory/cache"  # DIB_IMAGE_CACHE, kept on the host between builds
HOOKS_IN_TARGET = "/tmp/in_target.d"
PHASE_RUNNER = "/tmp/factory/dib-phase"
RUNNER_SOURCE = Path(__file__).with_name("dib-phase")
TIDY = "/tmp/factory/dib-tidy"
TIDY_SOURCE = Path(__file__).with_name("dib-tidy")
# After the tidy-up, in the target: an initramfs this layer made is made
# again (mkinitramfs honours SOURCE_DATE_EPOCH) if it may hold a copy of an
# identity the tidy-up changed: a file of the same name under its etc/ or
# var/ (a hook may copy a file elsewhere: open-iscsi's initiator name lands
# in etc/; usr/bin/hostname is a program, not /etc/hostname). The tidy-up
# names what it changed in TIDIED_LIST; most layers change nothing an
# initramfs holds, and making one costs about 25 s.
TIDIED_LIST = "tidied"  # in the hooks folder
REMAKE_INITRAMFS = (
    'PATH="$PATH:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"; '
    f'list={HOOKS_IN_TARGET}/{TIDIED_LIST}; [ -s "$list" ] || exit 0; '
    'command -v update-initramfs >/dev/null 2>&1 || exit 0; '
    'names=$(sed "s:.*/::" "$list" | sort -u); '
    'for initrd in $(find /boot -maxdepth 1 -name "initrd.img-*" -newermt "@$SOURCE_DATE_EPOCH" 2>/dev/null); do '
    '  if ! command -v lsinitramfs >/dev/null 2>&1 || lsinitramfs "$initrd" | grep -E "^(etc|var)/" | sed "s:.*/::" | grep -Fxq -e "$names"; then '
    '    echo "making the initramfs again: it may hold a copy of one of" $names; exec update-initramfs -u -k all; fi; '
    'done'
)


def make_hooks(dest: Path, visible: dict[str, Element], runs: dict[str, Element], phases: tuple[str, ...]) -> None:
    """Lay out TMP_HOOKS_PATH for a layer (or for the assembly, with all phases)."""
    dest.mkdir(parents=True, exist_ok=True)
    owner: dict[str, str] = {}  # "dir/hook" -> element that brought it
    wanted_phase_dirs = {f"{p}.d" for p in phases}
    for name in sorted(visible):
        element = visible[name]
        for entry in sorted(element.path.iterdir()):
            if entry.is_dir():
                if entry.name in SKIPPED_DIRS:
                    continue
                if entry.name in PHASE_DIRS and (name not in runs or entry.name not in wanted_phase_dirs):
                    continue
                _merge_dir(entry, dest / entry.name, entry.name, name, owner)
            elif entry.is_file() and not entry.name.endswith(".pyc"):
                shutil.copy2(entry, dest / entry.name)
    # DIB hands the install type to the chroot this way; keep the same file.
    envd = dest / "environment.d"
    envd.mkdir(exist_ok=True)
    (envd / "11-dib-install-type.bash").write_text(
        'export DIB_DEFAULT_INSTALLTYPE=${DIB_DEFAULT_INSTALLTYPE:-"source"}\n'
    )
    # The in-target runner, as disk-image-create copies it next to the hooks.
    shutil.copy2(dib_lib_dir() / "dib-run-parts", dest / "dib-run-parts")


def _merge_dir(src: Path, dst: Path, rel: str, element: str, owner: dict[str, str]) -> None:
    """Copy an element folder into the hooks tree as DIB's `cp -a` does:
    folders merge, and only a file both elements bring is a conflict."""
    dst.mkdir(exist_ok=True)
    for item in sorted(src.iterdir()):
        path = f"{rel}/{item.name}"
        if item.is_dir() and not item.is_symlink():
            _merge_dir(item, dst / item.name, path, element, owner)
            continue
        if path in owner:
            raise FactoryError(
                f"duplicate hook {path}: elements '{owner[path]}' and '{element}' both provide it; rename one of them"
            )
        owner[path] = element
        shutil.copy2(item, dst / item.name, follow_symlinks=False)


def element_yaml(elements: dict[str, Element]) -> str:
    return yaml.safe_dump({n: str(e.path) for n, e in sorted(elements.items())}, default_flow_style=True).strip()


def contract_env(layer_env: dict[str, str], runs: dict[str, Element], element_paths: list[Path], debug: bool) -> dict[str, str]:
    """Variables disk-image-create exports to every hook (outside and inside)."""
    env = {
        "LC_ALL": "C",
        "DIB_DEBUG_TRACE": "1" if debug else "0",
        "DIB_NO_TMPFS": "1",
        "DIB_DEFAULT_INSTALLTYPE": "source",
        "DIB_CHECKSUM": "0",
        "DIB_OFFLINE": "",
        "FS_TYPE": "ext4",
        "IMAGE_TYPE": "qcow2",
        "IMAGE_NAME": "image",
        "IMAGE_ELEMENT": " ".join(sorted(runs)),
        "IMAGE_ELEMENT_YAML": element_yaml(runs),
        "FACTORY_ELEMENT_ARRAY": " ".join(f"[{n}]={e.path}" for n, e in sorted(runs.items())),
        "ELEMENTS_PATH": ":".join(str(p) for p in element_paths),
        "TMP_HOOKS_PATH": HOOKS_IN_BUILDER,
        "TARGET_ROOT": TARGET_IN_BUILDER,
        "TMP_MOUNT_PATH": TARGET_IN_BUILDER,
        "TMP_BUILD_DIR": WORK_IN_BUILDER,
        "TMP_IMAGE_DIR": WORK_IN_BUILDER + "/image",
        "DIB_IMAGE_CACHE": CACHE_IN_BUILDER,
        "DIB_LOCKFILES": WORK_IN_BUILDER + "/locks",
        # The one time a build may write, from the key's inputs (factory/reproducible.py).
        "SOURCE_DATE_EPOCH": str(source_date_epoch(layer_env)),
    }
    env.update(layer_env)
    return env


def in_target_command(phase: str) -> list[str]:
    # As DIB's run_in_target: no TMPDIR or VIRTUAL_ENV from outside, a full PATH;
    # element bin/ folders come last on PATH.
    script = (
        f'[ -d {HOOKS_IN_TARGET}/{phase}.d ] || exit 0; '
        f'exec env -u TMPDIR -u VIRTUAL_ENV '
        f'PATH="$PATH:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:{HOOKS_IN_TARGET}/bin" '
        f'{HOOKS_IN_TARGET}/dib-run-parts {HOOKS_IN_TARGET}/{phase}.d'
    )
    return ["/bin/sh", "-c", script]


def has_hooks(hooks: Path, phase: str) -> bool:
    d = hooks / f"{phase}.d"
    return d.is_dir() and any(d.iterdir())
