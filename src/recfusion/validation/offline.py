"""Reports that open with no network: the browser assets GX and DVC take from CDNs, served locally.

GX's Data Docs templates load Bootstrap, jQuery, bootstrap-table, Font Awesome and Vega from CDNs,
and `dvc plots show` loads Vega from one: offline, the Data Docs index lists no suite, the result
pages lose their status icons and charts, and the plots page is blank. `make setup` installs the
same packages at the versions GX's templates name from npm (validation/npm/package.json, pinned by
its lock) into the venv. `localize_site` copies the files a Data Docs site loads into its
static/vendor/ and points every page at them; `write_plots_template` writes the HTML page
`dvc plots show` fills (`make setup` names it in .dvc/config.local), with Vega inlined.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

# where `make setup` runs `npm ci` (validation/npm/package.json is copied there first)
ASSETS_HOME = Path(sys.prefix) / "share" / "recfusion"
# the page `dvc plots show` fills (plots.html_template in .dvc/config.local, set by `make setup`)
PLOTS_TEMPLATE = ASSETS_HOME / "dvc-plots.html"


@dataclass(frozen=True)
class Asset:
    package: str  # folder under node_modules: the npm package (or its alias in package.json)
    file: str  # the file the page loads, inside the package
    companions: tuple[str, ...] = ()  # files or folders that file loads by relative path


# Vega, Vega-Lite and vega-embed in load order (vega-embed needs the other two): GX's result pages
# draw their charts with them, and so does the plots page.
VEGA: dict[str, Asset] = {
    "https://cdn.jsdelivr.net/npm/vega@5": Asset("vega", "build/vega.min.js"),
    "https://cdn.jsdelivr.net/npm/vega-lite@5": Asset("vega-lite", "build/vega-lite.min.js"),
    "https://cdn.jsdelivr.net/npm/vega-embed@6": Asset("vega-embed", "build/vega-embed.min.js"),
}
# Every CDN asset in GX 1.24's templates (render/view/templates/*.j2), by the URL they write.
CDN_ASSETS: dict[str, Asset] = {
    **VEGA,
    "https://cdnjs.cloudflare.com/ajax/libs/font-awesome/6.6.0/css/all.min.css": Asset(
        "@fortawesome/fontawesome-free", "css/all.min.css", ("webfonts",)
    ),
    "https://code.jquery.com/jquery-3.7.1.min.js": Asset("jquery", "dist/jquery.min.js"),
    "https://cdnjs.cloudflare.com/ajax/libs/popper.js/1.12.9/umd/popper.min.js": Asset(
        "popper.js", "dist/umd/popper.min.js"
    ),
    "https://maxcdn.bootstrapcdn.com/bootstrap/4.3.1/css/bootstrap.min.css": Asset(
        "bootstrap", "dist/css/bootstrap.min.css"
    ),
    "https://stackpath.bootstrapcdn.com/bootstrap/4.3.1/js/bootstrap.min.js": Asset(
        "bootstrap", "dist/js/bootstrap.min.js"
    ),
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.css": Asset(
        "bootstrap-table", "dist/bootstrap-table.min.css"
    ),
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.js": Asset(
        "bootstrap-table", "dist/bootstrap-table.min.js"
    ),
    "https://unpkg.com/bootstrap-table@1.19.1/dist/extensions/filter-control/bootstrap-table-filter-control.min.js": Asset(
        "bootstrap-table", "dist/extensions/filter-control/bootstrap-table-filter-control.min.js"
    ),
    "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/bootstrap-table-filter-control.css": Asset(
        "bootstrap-table-1.19.0",
        "dist/extensions/filter-control/bootstrap-table-filter-control.css",
    ),
    "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/bootstrap-table-filter-control.min.css": Asset(
        "bootstrap-table-1.19.0",
        "dist/extensions/filter-control/bootstrap-table-filter-control.min.css",
    ),
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/css/bootstrap-datepicker.min.css": Asset(
        "bootstrap-datepicker", "dist/css/bootstrap-datepicker.min.css"
    ),
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/js/bootstrap-datepicker.min.js": Asset(
        "bootstrap-datepicker", "dist/js/bootstrap-datepicker.min.js"
    ),
    "https://cdn.jsdelivr.net/npm/@forevolve/bootstrap-dark@1.1.0/dist/css/bootstrap-prefers-dark.css": Asset(
        "@forevolve/bootstrap-dark", "dist/css/bootstrap-prefers-dark.css"
    ),
}
# The logos GX takes from its web bucket (the navbar <img>, the dark theme's CSS background):
# the site's own static/images/ has the light one, which serves both.
_GX_IMAGE = re.compile(
    r"https://great-expectations-web-assets\.s3\.us-east-2\.amazonaws\.com/"
    r"(?:logo-long|full_logo_dark)\.png(?:\?[^\"')\s]*)?"
)
_GX_LOGO = "static/images/logo-long.png"
_TAG = re.compile(r"<(?:script|link|img)\b[^>]*>", re.IGNORECASE)
_NETWORK_URL = re.compile(r"""\b(?:src|href)=(["'])(https?://[^"']*)\1""", re.IGNORECASE)
# subresource-integrity attributes: a file:// page cannot fetch a script in CORS mode
_SRI = re.compile(r"""\s+(?:integrity|crossorigin)=(["'])[^"']*\1""", re.IGNORECASE)


def node_modules(home: Path = ASSETS_HOME) -> Path:
    """The npm packages `make setup` installed.

    Raises:
        FileNotFoundError: they are not installed.
    """
    modules = home / "node_modules"
    if not modules.is_dir():
        raise FileNotFoundError(
            f"the reports' browser assets are not installed ({modules} is missing): run "
            "`make setup`, which installs them from npm (src/recfusion/validation/npm)"
        )
    return modules


def localize_site(site: Path, modules: Path | None = None) -> None:
    """Points every page of the Data Docs site in `site` at local copies of its CDN assets.

    Copies each asset a page loads into `site`/static/vendor/<package>/ and rewrites the page's
    <script>, <link> and <img> tags (and the dark theme's logo) to relative paths, so the site
    opens from file:// with no network. Running it again on a localized site changes nothing.

    Args:
        site: the Data Docs site (the folder with index.html).
        modules: the installed npm packages (default: `node_modules()`).

    Raises:
        FileNotFoundError: the npm packages are not installed.
        ValueError: a page loads a network asset missing from CDN_ASSETS (a GX upgrade added
            one: add it there and to npm/package.json).
    """
    modules = modules if modules is not None else node_modules()
    used = set().union(*(_localize_page(page, site) for page in sorted(site.rglob("*.html"))))
    vendor = site / "static" / "vendor"
    for url in sorted(used):
        asset = CDN_ASSETS[url]
        for name in (asset.file, *asset.companions):
            source, target = modules / asset.package / name, vendor / asset.package / name
            target.parent.mkdir(parents=True, exist_ok=True)
            if source.is_dir():
                shutil.copytree(source, target, dirs_exist_ok=True)
            else:
                shutil.copyfile(source, target)


def _localize_page(page: Path, site: Path) -> set[str]:
    """Rewrites `page` in place; returns the CDN URLs it loaded."""
    root = "../" * (len(page.relative_to(site).parts) - 1)  # from the page up to `site`
    used: set[str] = set()

    def localize_tag(tag: re.Match[str]) -> str:
        found = _NETWORK_URL.search(tag.group(0))
        if found is None:
            return tag.group(0)
        url = found.group(2)
        if url not in CDN_ASSETS:
            raise ValueError(
                f"{page} loads {url} from the network: add it to CDN_ASSETS in {__file__} "
                "and its package to validation/npm/package.json"
            )
        used.add(url)
        asset = CDN_ASSETS[url]
        local = f"{root}static/vendor/{asset.package}/{asset.file}"
        return _SRI.sub("", tag.group(0)[: found.start(2)] + local + tag.group(0)[found.end(2) :])

    text = _GX_IMAGE.sub(root + _GX_LOGO, page.read_text(encoding="utf-8"))
    page.write_text(_TAG.sub(localize_tag, text), encoding="utf-8")
    return used


def plots_page(modules: Path) -> str:
    """The HTML template `dvc plots show` fills: DVC's default page with the Vega bundles inlined
    in place of its CDN <script> tags (DVC adds those only where a template has a {scripts}
    placeholder, and this one has none), so the page opens offline wherever `-o` writes it."""
    # a "</script" inside a bundle would end its element early; "<\/script" means the same in JS
    bundles = [
        (modules / a.package / a.file).read_text(encoding="utf-8").replace("</script", "<\\/script")
        for a in VEGA.values()
    ]
    scripts = "\n".join(f"<script>{b}</script>" for b in bundles)
    return (
        '<!DOCTYPE html>\n<html>\n<head>\n<meta charset="utf-8">\n{refresh_tag}\n'
        f"<title>recfusion plots</title>\n{scripts}\n"
        "<style>table { border-spacing: 15px; }</style>\n</head>\n<body>\n{plot_divs}\n"
        "</body>\n</html>\n"
    )


def write_plots_template(out: Path = PLOTS_TEMPLATE, modules: Path | None = None) -> Path:
    """Writes `plots_page` to `out` (the path .dvc/config.local's plots.html_template names).

    Raises:
        FileNotFoundError: the npm packages are not installed.
    """
    page = plots_page(modules if modules is not None else node_modules())
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    return out


def main(argv: list[str] | None = None) -> int:
    """`make setup`'s last step: the plots template, from the packages npm just installed."""
    parser = argparse.ArgumentParser(description=write_plots_template.__doc__)
    parser.add_argument("out", nargs="?", type=Path, default=PLOTS_TEMPLATE)
    write_plots_template(parser.parse_args(argv).out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
