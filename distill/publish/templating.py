"""The Jinja2 environments the publish stage renders from (templates in ``distill/publish/templates``).

Templates are loaded through :class:`jinja2.PackageLoader`, so they are found from
an installed wheel as well as from a source checkout (they are package data).
Two environments: HTML with autoescaping on, so no run-provided text can inject
markup, and Markdown with it off, since Markdown escaping is done per cell.
"""

from __future__ import annotations

from functools import lru_cache

import jinja2


@lru_cache(maxsize=2)
def environment(autoescape: bool) -> jinja2.Environment:
    """The shared environment for HTML (``autoescape=True``) or Markdown (``False``) templates."""
    return jinja2.Environment(
        loader=jinja2.PackageLoader("distill.publish", "templates"),
        autoescape=autoescape,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
    )


def render(template: str, **context: object) -> str:
    """Render ``templates/<template>``; HTML templates (``.html.j2``) autoescape, the others do not."""
    return environment(template.endswith(".html.j2")).get_template(template).render(**context)
