"""Training glue: recipe -> TRL GRPOTrainer (config mapping, rewards, data order, callbacks)."""
