"""Word lists, prompt templates and demographic axes as data files, plus their small loaders.

``load_taxonomy("sobit")`` gives the base So-B-IT reconstruction (see taxonomy/README.md) as a
polars DataFrame (category, word, pos); ``load_taxonomy("sobit:ameliagmz")`` another public
version; ``load_taxonomy("words.csv")`` or a directory a user's own list. ``load`` returns the same
words with their provenance (name, files, content hash). Templates: ``load_templates`` and
``build_prompts``; demographic axes: ``taxonomy.axes``.
"""

from __future__ import annotations

from taxonomy.prompts import (
    Template,
    TemplateSet,
    build_prompts,
    builtin_template_sets,
    indefinite_article,
    load_templates,
    query_vectors,
    words_without_tokens,
)
from taxonomy.words import DATA_DIR, SOBIT_VERSIONS, Taxonomy, load, load_taxonomy

__all__ = [
    "DATA_DIR", "SOBIT_VERSIONS", "Taxonomy", "Template", "TemplateSet", "build_prompts",
    "builtin_template_sets", "indefinite_article", "load", "load_taxonomy", "load_templates",
    "query_vectors", "words_without_tokens",
]
