"""A user's module that fails while it is imported."""

raise ImportError("No module named 'some_missing_dependency'")
