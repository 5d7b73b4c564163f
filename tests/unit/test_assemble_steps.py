"""The assembler's step timings, read from its log into `step timed` events."""

from factory.assemble import _steps


def test_step_lines_are_read_in_order_and_other_lines_ignored():
    lines = ["FACTORY-TREE-KB: 1234", "FACTORY-STEP: flatten 0.05", "mke2fs 1.47.0",
             "FACTORY-STEP: populate 9.87", "FACTORY-STEP: convert-qcow2 20.10"]
    assert _steps(lines) == [("flatten", 0.05), ("populate", 9.87), ("convert-qcow2", 20.1)]
