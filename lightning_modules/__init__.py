"""LightningModules (training tasks), their losses, metrics and LR schedules.

The ``stages`` subpackage holds the plain ``nn.Module`` stages. Import the tasks from their
modules (``lightning_modules.restoration_task.RestorationTask``,
``lightning_modules.flow_task.FlowPretrainTask``); this package does not import them eagerly, so
importing a stage does not pull in Lightning.
"""
