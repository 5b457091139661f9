"""rft's GRPOTrainer: TRL's, with optimizer parameter groups per model part.

Only ``create_optimizer`` (the Trainer hook meant for this) is overridden; TRL's generation,
loss and logging are untouched.
"""

from __future__ import annotations

from trl import GRPOTrainer

from rft.models.parts import parameter_groups


class RftGRPOTrainer(GRPOTrainer):
    """``GRPOTrainer`` whose optimizer gives the vision tower, projector and language model their own
    learning rates (``part_learning_rates``; None means ``args.learning_rate``)."""

    def __init__(self, *args, part_learning_rates: dict[str, float | None] | None = None, **kwargs):
        self.part_learning_rates = part_learning_rates or {}
        super().__init__(*args, **kwargs)

    def create_optimizer(self, model=None):
        opt_model = self.model if model is None else model
        if self.optimizer is None:
            groups = parameter_groups(opt_model, self.args.learning_rate, self.part_learning_rates,
                                      self.args.weight_decay, self.get_decay_parameter_names(opt_model))
            optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, opt_model)
            self.optimizer = optimizer_cls(groups, **optimizer_kwargs)
        return self.optimizer
