"""A model folder's fixed layout, owned here (as a MONAI bundle's is by its loader):

    model.keras             weights + architecture (no optimizer), loaded with safe_mode=True
    model_card.json         the ModelCard (cxr_core.model.card)
    MODEL_CARD.md           the same for people, always rendered from the JSON
    validation_scores.csv   per-image held-out scores (dashboards, fit-presentation, site point comparison)
    history.csv             per-epoch training metrics
    ood.npz                 the OOD detector (cxr_core.safety.ood)
    population.npz          the adult-film check (cxr_core.safety.population)
    appearance.keras        the chest-appearance autoencoder (cxr_core.safety.appearance), safe_mode=True
    appearance.npz          its thresholds and code statistics
    training_hashes.txt     sha256 of every training image (cxr_core.safety.overlap)

Every reader and writer of these files goes through `ModelFolder`; nothing else spells a file name.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .card import ModelCard
from .card_markdown import render_markdown
from ..errors import ModelError
from ..fileio import write_atomic, write_json_atomic
from .keras_import import load_keras_model


class ModelFolder:
    MODEL = "model.keras"
    CARD = "model_card.json"
    CARD_MARKDOWN = "MODEL_CARD.md"
    SCORES = "validation_scores.csv"
    HISTORY = "history.csv"
    OOD = "ood.npz"
    POPULATION = "population.npz"
    APPEARANCE_MODEL = "appearance.keras"
    APPEARANCE = "appearance.npz"
    HASHES = "training_hashes.txt"

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"ModelFolder({str(self.path)!r})"

    model_file = property(lambda self: self.path / self.MODEL)
    card_file = property(lambda self: self.path / self.CARD)
    scores_file = property(lambda self: self.path / self.SCORES)
    history_file = property(lambda self: self.path / self.HISTORY)
    ood_file = property(lambda self: self.path / self.OOD)
    population_file = property(lambda self: self.path / self.POPULATION)
    appearance_model_file = property(lambda self: self.path / self.APPEARANCE_MODEL)
    appearance_file = property(lambda self: self.path / self.APPEARANCE)
    hashes_file = property(lambda self: self.path / self.HASHES)

    def card(self) -> ModelCard:
        """The folder's card, validated; ModelError (quoting the folder) when it is missing or invalid."""
        try:
            data: Any = json.loads(self.card_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise ModelError(f"{str(self.path)!r} is not a model folder (no readable {self.CARD}).") from None
        try:
            return ModelCard.from_dict(data, default_id=self.path.name)
        except ModelError as exc:
            raise ModelError(f"{str(self.path)!r} has an invalid model card: {exc}") from None

    def load_model(self) -> Any:
        """The Keras model, loaded with safe_mode=True; ModelError when it cannot be."""
        return load_keras_model(self.model_file)

    def write_card(self, card: ModelCard) -> ModelCard:
        """The card as JSON and Markdown, each atomically (before registration, or by a maintenance command)."""
        write_json_atomic(self.card_file, card.to_dict())
        write_atomic(self.path / self.CARD_MARKDOWN, render_markdown(card).encode())
        return card

    def update_card(self, **changes: Any) -> ModelCard:
        """A maintenance command's change to the card (`fit-ood`, `fit-presentation`, the validation gate): the
        only writes into a model folder after it is finished."""
        return self.write_card(self.card().with_fields(**changes))
