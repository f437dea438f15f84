"""PyTorch Lightning: a callback that reports to the session and checkpoints through it,
and the trainable of the study-file form ``lightning:`` (docs/own-code.md#pytorch-lightning).

A hand-written trainable adds :class:`SessionCallback` to its own Trainer and resumes a
retried trial with :func:`restored_checkpoint`::

    trainer = L.Trainer(max_epochs=session.max_epochs, callbacks=[SessionCallback(session)])
    with restored_checkpoint(session) as ckpt_path:
        trainer.fit(module, datamodule=data, ckpt_path=ckpt_path)
"""

from __future__ import annotations

from pipeline.integrations.lightning._callback import SessionCallback, restored_checkpoint
from pipeline.integrations.lightning._trainable import LightningTrainable

__all__ = ["LightningTrainable", "SessionCallback", "restored_checkpoint"]
