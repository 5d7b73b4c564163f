"""Where things run: the container engine, the builder image, DIB's phase contract."""
