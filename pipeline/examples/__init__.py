"""Example tasks that ship with the package and show how a task is written.

They are not in the task registry: a study file names one as
``package.module:function`` (``pipeline.examples.diabetes:diabetes``), as a user's own
task would be named.
"""
