"""Network architectures the tasks train (those no maintained library ships)."""
