"""The app moves between pages by links and the sidebar, never by a page switch from the server.

A page that refreshes itself (a `run_every` fragment: the Worklist, the Training page) keeps a timer in the browser.
Following a link or the sidebar stops it before the browser leaves the page. A switch made by the server
(`st.switch_page`) does not: a refresh already on its way then ran after the new page had drawn, for the old page,
and the browser cleared the new page (the Worklist's "Open in the Viewer" left a blank Viewer). The browser test of
that path is tests/system/test_deployment.py."""

from __future__ import annotations

import ast

from tests.conftest import PROJECT_ROOT

APP_FILES = [PROJECT_ROOT / "app.py", *sorted((PROJECT_ROOT / "app_pages").glob("*.py")),
             *sorted((PROJECT_ROOT / "cxr_app").glob("*.py"))]


def _page_switches(source: str) -> list[int]:
    """Lines that call `switch_page` (as `st.switch_page`, or imported under its own name)."""
    return [node.lineno for node in ast.walk(ast.parse(source)) if isinstance(node, ast.Call)
            and ((isinstance(node.func, ast.Attribute) and node.func.attr == "switch_page")
                 or (isinstance(node.func, ast.Name) and node.func.id == "switch_page"))]


def test_no_page_is_switched_from_the_server():
    """Only the app's root address forwards to the Viewer's own address, before any page (or its timers) ran."""
    assert len(APP_FILES) > 10
    found = {path.relative_to(PROJECT_ROOT).as_posix(): lines for path in APP_FILES
             if (lines := _page_switches(path.read_text()))}
    start = next(node for node in ast.walk(ast.parse((PROJECT_ROOT / "app.py").read_text()))
                 if isinstance(node, ast.FunctionDef) and node.name == "_start")
    assert found.pop("app.py", []) == [start.body[-1].lineno]
    assert not found, f"use st.page_link (the browser stops the page's refresh timers first), not switch_page: {found}"


def test_the_check_finds_a_switch_however_it_is_written():
    assert _page_switches("import streamlit as st\nst.switch_page('app_pages/viewer.py')\n") == [2]
    assert _page_switches("from streamlit import switch_page\n\nswitch_page('x.py')\n") == [3]
    assert _page_switches("st.page_link('app_pages/viewer.py', query_params={'case': '1'})\n") == []
