"""Examples that ship with the package, each with a study file under ``studies/``.

They are not in the task registry: a study file names one as ``package.module:function``
(``task: {name: pipeline.examples.diabetes:diabetes}``, ``trainable:
pipeline.examples.ray_tutorial:train_cifar``), as a user's own code would be named.
"""
