"""deepscope.robust."""
