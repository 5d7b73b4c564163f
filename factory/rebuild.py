"""`factory verify-layer KEY`: rebuild a layer of the local store, from
its cached parent, under a scratch name, and compare the diff digests.

A match says the layer's bytes follow from its key alone. A mismatch keeps
the rebuilt image (factory-verify:KEY) for `factory diff` to explain.
"""

from __future__ import annotations

from dataclasses import dataclass

from factory import log
from factory.engine.docker import client, image_exists
from factory.errors import UsageError
from factory.plan import Plan
from factory.store.local import own_diffs

SCRATCH_REPO = "factory-verify"
_log = log.get("verify-layer")


@dataclass
class Rebuilt:
    layer: str
    key: str
    original: list[str]  # the layer's own diff digests
    rebuilt: list[str]
    scratch: str  # the rebuilt image's reference (removed on a match)
    seconds: float

    @property
    def match(self) -> bool:
        return self.original == self.rebuilt


def verify_layer(plan: Plan, prefix: str, verbose: bool) -> Rebuilt:
    from factory.build import build_one

    hits = [(i, l) for i, l in enumerate(plan.layers) if l.key.startswith(prefix)]
    if len(hits) != 1:
        listed = ", ".join(f"{l.name} {l.key[:16]}" for l in plan.layers)
        raise UsageError(f"'{prefix}' is {'not' if not hits else 'more than one'} of this target's layers ({listed}); "
                         "give the target the layer was built for and its key")
    index, layer = hits[0]
    if not image_exists(layer.tag):
        raise UsageError(f"layer {layer.name} {layer.key[:16]} is not in the local store; build or pull it first")
    parent = plan.layers[index - 1].tag if index else None
    if parent and not image_exists(parent):
        raise UsageError(f"its parent layer {plan.layers[index - 1].key[:16]} is not in the local store; build the target first")
    scratch = (SCRATCH_REPO, layer.key)
    _log.info("rebuilding layer under a scratch name", layer=layer.name, key=layer.key[:16], scratch=":".join(scratch))
    result = build_one(plan, layer, parent, verbose, commit_as=scratch)
    rebuilt = Rebuilt(layer.name, layer.key, own_diffs(layer.tag), own_diffs(":".join(scratch)), ":".join(scratch), result.seconds)
    if rebuilt.match:
        client().images.remove(rebuilt.scratch)
    return rebuilt
