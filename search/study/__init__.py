"""A study's lifecycle: opening or resuming it, its samplers and early stopping, worker processes, liveness of trials,
budgets checked up front."""
