"""ModelFolder (cxr_core.model.folder): the one owner of a model folder's layout. Every file a model folder holds is
named by it, its card is read validated (a missing or damaged one is an error quoting the folder), and a maintenance
change rewrites the card's JSON and Markdown together, changing only the named fields."""

from __future__ import annotations

import json
import shutil

import pytest

from cxr_core.errors import ModelError
from cxr_core.model.folder import ModelFolder


def test_every_file_of_the_layout_is_named_by_the_folder(tmp_path):
    folder = ModelFolder(tmp_path / "m")
    files = {folder.model_file, folder.card_file, folder.scores_file, folder.history_file, folder.ood_file,
             folder.population_file, folder.appearance_model_file, folder.appearance_file, folder.hashes_file}
    assert len(files) == 9 and all(f.parent == tmp_path / "m" for f in files)
    assert folder.card_file.name == ModelFolder.CARD and folder.model_file.name == ModelFolder.MODEL


def test_the_controlled_models_folder_holds_what_its_layout_names(controlled_model_dir):
    folder = ModelFolder(controlled_model_dir)
    assert folder.model_file.is_file() and folder.card_file.is_file()
    assert folder.card().model_id == json.loads(folder.card_file.read_text())["model_id"]


@pytest.mark.parametrize("damage", ["missing", "not json", "bad value"])
def test_a_missing_or_damaged_card_is_an_error_quoting_the_folder(controlled_model_dir, tmp_path, damage):
    copy = tmp_path / "copy"
    shutil.copytree(controlled_model_dir, copy)
    card = ModelFolder(copy).card_file
    if damage == "missing":
        card.unlink()
    elif damage == "not json":
        card.write_text("{ half a card")
    else:
        card.write_text(json.dumps({**json.loads(card.read_text()), "threshold": 1.5}))
    with pytest.raises(ModelError, match=str(copy)):
        ModelFolder(copy).card()


def test_update_card_changes_only_the_named_fields_in_json_and_markdown(controlled_model_dir, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(controlled_model_dir, copy)
    folder = ModelFolder(copy)
    before = json.loads(folder.card_file.read_text())
    new_threshold = 0.41 if before["threshold"] != 0.41 else 0.42
    folder.update_card(threshold=new_threshold)
    after = json.loads(folder.card_file.read_text())
    assert after["threshold"] == new_threshold and folder.card().threshold == new_threshold
    assert {k: v for k, v in after.items() if k != "threshold"} == {k: v for k, v in before.items() if k != "threshold"}
    assert f"**{new_threshold:.3f}**" in (copy / ModelFolder.CARD_MARKDOWN).read_text()  # the Markdown follows
    assert json.loads(ModelFolder(controlled_model_dir).card_file.read_text()) == before  # the source is untouched
