"""Run infrastructure: config checks and resolvers, checkpoints, phased training, instantiation."""
