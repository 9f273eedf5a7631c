"""deepscope.nets."""
