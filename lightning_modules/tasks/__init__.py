"""Training tasks (LightningModules) with their losses, metrics and learning-rate schedules."""
