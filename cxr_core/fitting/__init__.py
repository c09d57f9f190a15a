"""Fitting things to a finished model, on its held-out films: the input guards (`guards`) and how its results are
presented (`presentation`). Training, the ensemble, site adaptation and the `fit-ood` / `fit-presentation` commands
call these; this layer sits above model/ and validation/, whose pieces it combines."""
