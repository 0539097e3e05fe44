"""The model and how it is trained, in three subpackages, one job each.

- ``stages``: the network's parts (flow, warp, alignment, codec, fusion, restoration), plain
  ``nn.Module``s with no Lightning import;
- ``tasks``: the LightningModules that train them, with their losses, metrics and schedules;
- ``run``: what turns a Hydra config into a run (config checks, resolvers, checkpoints,
  phased training, instantiation).

Nothing is imported eagerly here, so importing a stage does not pull in Lightning.
"""
