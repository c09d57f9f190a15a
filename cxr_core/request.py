"""One request's context: what a page run, a CLI command or a listener association works with, each resolved once.

    store      the case store (None where it does not open: results are then not kept)
    reader     who acts, normalised once (cxr_core.readers.signed: a name, or "unsigned")
    entry      the model this request uses, by the one lookup (cxr_core.site.models.model_for): the model asked for,
               else the site's governed choice, else the registry's default
    site_model the site's model for every user (what `entry` is when nothing was asked for)
    point      the operating point that decides with `entry` (the site's governed point for it, else its own)
    site       the site's figures at that point, with where their labels came from (None without a local evaluation)

The surfaces read these and act through the request's methods (keep a case, review, activate or revert the site's
model), so no surface looks a model, a point or a reader up again, and every site-wide change carries the request's
reader. `site_model` and `site` are resolved when first read, so a request that never shows them (a command, a
listener association) never pays for them, and a model asked for never fails on a site model that cannot be had.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Mapping

from .cases.analyse import Analysis, keep_case
from .cases.store import CaseStore
from .errors import CXRError, ModelError
from .model.operating_point import OperatingPoint, resolve
from .model.predict import Prediction, Predictor
from .model.registry import ModelEntry, Registry
from .readers import UNSIGNED, signed
from .settings import SitePointPolicy, current
from .site.activation import activate_model, revert_active_model
from .site.models import ActiveChoice, model_for
from .validation.site_point import SiteFigures, site_figures


@dataclass(frozen=True)
class Request:
    """The context of one request (see the module docstring); build it with `Request.resolve`."""

    store: CaseStore | None
    reader: str
    registry: Registry
    entry: ModelEntry | None
    point: OperatingPoint | None
    policy: SitePointPolicy
    asked: str | None = None  # the model asked for (None: the site's)

    @classmethod
    def resolve(cls, store: CaseStore | None, model: str | None = None, reader: str = "",
                registry: Registry | None = None) -> "Request":
        """Resolve `model` (a folder, an id, or None for the site's model) and its point, each once. A model that
        cannot be had raises CXRError (ModelError, RegistryError); a model asked for never depends on the site's."""
        registry = registry or Registry()
        entry = model_for(model, store, registry)
        point = resolve(entry.card, store) if entry is not None else None
        return cls(store, signed(reader), registry, entry, point, current().site_policy, model or None)

    @cached_property
    def site_model(self) -> ModelEntry | None:
        """The site's model for every user: the entry itself where none was asked for; None where it cannot be
        had (a request for another model goes on without it)."""
        if not self.asked:
            return self.entry
        try:
            return model_for(None, self.store, self.registry)
        except CXRError:
            return None

    @cached_property
    def site(self) -> SiteFigures | None:
        """The site's figures at this request's point (read once, when first shown)."""
        if self.entry is None or self.point is None:
            return None
        return site_figures(self.entry.model_id, self.point, self.policy)

    @classmethod
    def without_model(cls, store: CaseStore | None, reader: str = "") -> "Request":
        """A request where no model can be had (none registered, or the site's cannot be loaded: said elsewhere)."""
        return cls(store, signed(reader), Registry(), None, None, current().site_policy)

    @property
    def model_dir(self) -> Path:
        """The folder of the model in use (ModelError where no model is registered)."""
        if self.entry is None:
            raise ModelError(f"No model is registered in {str(self.registry.root)!r}; pass --model DIR or train one "
                             "with `python -m train`.")
        return self.entry.path

    @property
    def signed_in(self) -> bool:
        """Whether a reader named themself (an action that must be signed is refused otherwise)."""
        return self.reader != UNSIGNED

    @property
    def is_site_model(self) -> bool:
        """Whether this request uses the site's model (not a model picked for comparison)."""
        return self.entry is not None and self.site_model is not None and self.entry.model_id == self.site_model.model_id

    # ---- actions, each as this request's reader
    def keep(self, pred: Prediction, data: bytes, predictor: Predictor,
             cam_settings: dict[str, Any] | None = None) -> Analysis:
        """Keep a prediction (made at this request's point) as a case, where the store is open."""
        return keep_case(pred, data, predictor, self.store, self.reader, cam_settings)

    def review(self, case_id: int, decision: str, label: str, comment: str = "") -> None:
        assert self.store is not None, "reviews need the case store"
        self.store.review(case_id, decision, label, self.reader, comment)

    def activate(self, model_id: str, evidence: Mapping[str, Any] | None = None) -> ActiveChoice:
        """Make `model_id` the site's model (the one governed path: refused past the rule or without a name)."""
        assert self.store is not None, "the site's model is kept in the case store"
        return activate_model(self.store, self.registry, model_id, self.reader, self.policy, evidence)

    def revert(self) -> ActiveChoice:
        assert self.store is not None, "the site's model is kept in the case store"
        return revert_active_model(self.store, self.registry, self.reader)
