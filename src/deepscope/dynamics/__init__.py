"""deepscope.dynamics."""
