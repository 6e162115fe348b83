"""Edge control plane."""
