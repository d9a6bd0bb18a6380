"""Input templates: one text from a row's fields, e.g. VIP's "hypothesis: {b}. premise: {a}".

A template is a Python format string over the row's text fields, named two ways: by letter in the
order of the source's text fields ({a} = the first, {b} = the second, ...; OpenPrompt's text_a /
text_b) or by the field's own name ({premise}, {word}). The dataset key `dataset.template` holds it
(null = the fields joined as before); `dataset.templates` holds the per-backbone-family defaults
that `dataset.template` follows unless set (conf/dataset/cb.yaml: VIP's templates for seq2seq).
"""

from __future__ import annotations

import string
from collections.abc import Sequence

from prompt_bench.errors import ConfigError

LETTERS = string.ascii_lowercase


def template_fields(template: str, field_names: Sequence[str]) -> list[str]:
    """The placeholders of `template`, each checked against the letters and names of `field_names`."""
    known = set(LETTERS[: len(field_names)]) | set(field_names)
    try:
        placeholders = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError as error:
        raise ConfigError(f"dataset.template {template!r} is not a valid format string ({error}).") from error
    for name in placeholders:
        if name not in known:
            letters = ", ".join("{" + LETTERS[i] + "}" for i in range(len(field_names)))
            names = ", ".join("{" + field + "}" for field in field_names)
            raise ConfigError(
                f"dataset.template {template!r} uses {{{name}}}, which is not a text field; the fields here are "
                f"{letters} in order, or by name {names} (set dataset.task's text fields or fix the template)."
            )
    return placeholders


def format_rows(template: str, field_names: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """N rows of cells (one per field, in `field_names` order) -> N texts: `template` filled with
    each row's cells, by letter ({a}, {b}, ...) and by field name; empty cells fill in as ""."""
    template_fields(template, field_names)
    texts = []
    for cells in rows:
        values = dict(zip(LETTERS, cells)) | dict(zip(field_names, cells))
        texts.append(template.format(**values).strip())
    return texts
