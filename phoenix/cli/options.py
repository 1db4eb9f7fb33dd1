"""Helpers shared by the subcommands' option handling."""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import ValidationError


def option_errors(exc: ValidationError, names: Mapping[str, str]) -> str:
    """A settings model's validation errors, with each field named by its command-line option.

    `names` maps field names to options; a field missing from it is shown as `--field-name`.
    """

    def option(field: object) -> str:
        return names.get(str(field), "--" + str(field).replace("_", "-"))

    return "; ".join(
        f"{option(e['loc'][0]) if e['loc'] else 'options'}: {e['msg']}" for e in exc.errors()
    )
