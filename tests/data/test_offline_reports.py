"""The Data Docs and the `dvc plots show` page load nothing from the network (offline they were
blank: GX's templates and DVC's page take Bootstrap, jQuery, Font Awesome and Vega from CDNs)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest
from configobj import ConfigObj

from recfusion.validation.gx_runner import GXValidator
from recfusion.validation.offline import PLOTS_TEMPLATE, localize_site
from recfusion.validation.suites import Suite
from tests.conftest import REPO

# one failing row-level expectation (red status icon) and one passing KL check (two charts)
TINY = Suite(
    "tiny",
    [
        {
            "type": "expect_column_values_to_be_in_set",
            "kwargs": {"column": "c", "value_set": ["a"]},
            "meta": {"level": "row"},
        },
        {
            "type": "expect_column_kl_divergence_to_be_less_than",
            "kwargs": {
                "column": "c",
                "partition_object": {"values": ["a", "b"], "weights": [0.5, 0.5]},
                "threshold": 0.1,
            },
            "meta": {"level": "table"},
        },
    ],
    {},
)


class _Assets(HTMLParser):
    """The src / href of every <script>, <link> and <img> in a page."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "link", "img"):
            self.urls += [v for k, v in attrs if k in ("src", "href") and v]


def assets_of(page: Path) -> list[str]:
    parser = _Assets()
    parser.feed(page.read_text(encoding="utf-8"))
    return parser.urls


def is_network(url: str) -> bool:
    return url.startswith(("http://", "https://", "//"))


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    docs = tmp_path_factory.mktemp("docs")
    df = pd.DataFrame({"c": ["a", "b", "a", "b"]})
    outcome = GXValidator(docs).validate(TINY, df, {})
    assert [o.success for o in outcome.outcomes] == [False, True]  # 2 of 4 rows are not "a"
    return docs


def test_data_docs_load_every_asset_from_the_site(site: Path) -> None:
    pages = sorted(site.rglob("*.html"))
    kinds = {p.relative_to(site).parts[0] for p in pages}
    assert kinds == {"index.html", "expectations", "validations"}, pages
    for page in pages:
        urls = assets_of(page)
        assert not [u for u in urls if is_network(u)], page
        vendored = [u for u in urls if "static/vendor/" in u]
        # what the index's list of suites, the status icons and the charts need
        for needed in ("bootstrap-table.min.js", "fontawesome-free/css/all.min.css", "vega-embed"):
            assert any(needed in u for u in vendored), (page, needed)
        missing = [u for u in vendored if not (page.parent / u).resolve().is_file()]
        assert not missing, (page, missing)
    # the status icons' font, which all.min.css loads by a relative path
    fonts = site / "static/vendor/@fortawesome/fontawesome-free/webfonts"
    assert (fonts / "fa-solid-900.woff2").is_file()
    assert "great-expectations-web-assets" not in (site / "index.html").read_text()  # the logo


def test_localizing_twice_changes_nothing(site: Path) -> None:
    before = {p: p.read_bytes() for p in site.rglob("*.html")}
    localize_site(site)
    assert {p: p.read_bytes() for p in site.rglob("*.html")} == before


def test_an_unknown_network_asset_is_refused(tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text('<script src="https://example.org/x.js"></script>')
    with pytest.raises(ValueError, match=r"https://example.org/x.js from the network"):
        localize_site(tmp_path, modules=tmp_path)


def test_dvc_plots_page_is_offline_and_draws_each_plot_once(tmp_path: Path) -> None:
    # `make setup` names the page it writes as this checkout's template
    configured = ConfigObj(str(REPO / ".dvc" / "config.local"))["plots"]["html_template"]
    template = (REPO / ".dvc" / configured).resolve()
    assert template == PLOTS_TEMPLATE.resolve()
    shutil.copy(REPO / "dvc.yaml", tmp_path / "dvc.yaml")
    shutil.copytree(REPO / "reports" / "plots", tmp_path / "reports" / "plots")
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}

    def dvc(*args: str) -> None:
        subprocess.run([sys.executable, "-m", "dvc", *args], cwd=tmp_path, env=env, check=True)

    dvc("init", "--no-scm", "-q")
    shutil.copytree(REPO / ".dvc" / "plots", tmp_path / ".dvc" / "plots")  # custom templates
    dvc("plots", "show", "-q", "-o", "out", "--html-template", str(template))
    page = tmp_path / "out" / "index.html"
    assert not [u for u in assets_of(page) if is_network(u)]
    # the two top-level plots of dvc.yaml, each once (the evaluate stage's CSVs are outs, not
    # plots, or DVC draws them a second time with its default template)
    assert page.read_text(encoding="utf-8").count("vegaEmbed(") == 2
