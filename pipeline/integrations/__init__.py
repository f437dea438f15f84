"""Training code people already have: a LightningModule or a Hugging Face model, tuned
as any trainable is (pruning, retries from a checkpoint, ``load_best``).

Each framework is an optional extra and is imported only where a study names it:
``pipeline.integrations.lightning`` and ``pipeline.integrations.transformers`` hold the
callbacks a hand-written ``train(config, session)`` adds to its own Trainer, and the
trainables of the study-file forms ``lightning:`` and ``transformers:``.
"""

from __future__ import annotations

from pipeline.integrations._forms import check_framework, framework_trainable

__all__ = ["check_framework", "framework_trainable"]
