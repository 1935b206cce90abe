"""The second half of the notebooks in headless Chromium (see ``test_browser.py``: the same
checks; two files so that two test workers share the work)."""

import pytest

import test_browser as base

pytestmark = pytest.mark.browser
server = base.server
browser = base.browser


@pytest.mark.parametrize("name", base.NOTEBOOKS[base.HALF:])
def test_notebook_renders_in_jupyterlab(server, browser, name):
    base.check_notebook(server, browser, name)
