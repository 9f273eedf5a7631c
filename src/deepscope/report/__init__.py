"""deepscope.report."""
