"""Hugging Face ``Trainer``: a callback that reports every evaluation to the session and
checkpoints through it, and the trainable of the study-file form ``transformers:``
(docs/own-code.md#hugging-face-trainer).

A hand-written trainable adds :class:`SessionCallback` to its own Trainer (evaluating and
saving once per epoch) and resumes a retried trial with :func:`restored_checkpoint`::

    trainer.add_callback(SessionCallback(session))
    with restored_checkpoint(session, args.output_dir) as folder:
        trainer.train(resume_from_checkpoint=folder)
"""

from __future__ import annotations

from pipeline.integrations.transformers._callback import SessionCallback, restored_checkpoint
from pipeline.integrations.transformers._trainable import TransformersTrainable

__all__ = ["SessionCallback", "TransformersTrainable", "restored_checkpoint"]
