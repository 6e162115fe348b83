"""EdgeSight edge agent: capture -> preprocess -> inference -> tracking -> publish."""
