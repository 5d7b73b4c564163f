"""Layer stores: the engine's local image store (remote stores come later)."""
