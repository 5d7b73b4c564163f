"""The names a stored layer carries, read alike by the planner, the engine
and every store: its image repository and tag, and its label names."""

LAYER_REPO = "factory-layer"
LABEL = "org.factory"  # label prefix: org.factory.key, .layer, .parent, .target, ...


def layer_tag(key: str) -> str:
    return f"{LAYER_REPO}:{key}"
