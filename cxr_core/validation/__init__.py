"""How a model is judged: datasets, metrics, evaluations, the stress suite's shifts, site points."""
