"""Model backends, one module each; registered through the `register_engines` hook."""
