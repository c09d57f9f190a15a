"""The site: what a hospital's own evidence changes for every user of its case database, under governance.

    models.py    models kept in the case database (archives any workstation can load), and the site's one
                 governed active model: activated by a named reader past the gate, audited, revertible
    data.py      the site's labelled films for adaptation: sources, the checks each film must pass, the
                 patient-grouped split
    evidence.py  parent and adapted model side by side on the site's local-validation patients; the gate

Layer: after `cases` (it reads the case database), before `dicom`. Fine-tuning itself is training code
(`train/site.py`); the CLI and the app call it.
"""
