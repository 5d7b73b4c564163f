"""Where the base layer's root phase writes its new tree: memory when the host
has it to spare, else a folder on disk."""

from factory.engine.layer import ROOT_TMPFS_NEEDS, tmpfs_fits


def meminfo(available_kib: int) -> str:
    return f"MemTotal:       25165824 kB\nMemFree:         1000000 kB\nMemAvailable:   {available_kib} kB\n"


def test_a_host_with_memory_to_spare_builds_the_root_tree_in_tmpfs():
    assert tmpfs_fits(meminfo(ROOT_TMPFS_NEEDS // 1024))
    assert tmpfs_fits(meminfo(20 * 1024 * 1024))


def test_a_small_host_or_an_unreadable_meminfo_builds_it_on_disk():
    assert not tmpfs_fits(meminfo(ROOT_TMPFS_NEEDS // 1024 - 1))
    assert not tmpfs_fits("MemTotal: 1 kB\n")
