"""Command-line flags generated from dataclass fields: one `--field-name` per Recipe field, its type,
help and allowed values read off the field (train/recipe.py), so a new field is a new flag."""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing

from ..train.recipe import Recipe

_LENGTH = ("epochs", "iterations")   # mutually exclusive: a run's length is one or the other
_NOT_FLAGS = ("name",)               # the recipe's name is --recipe


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def recipe_fields(only: tuple[str, ...] | None = None) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(Recipe)
            if f.name not in _NOT_FLAGS and (only is None or f.name in only)]


def _argument(f: dataclasses.Field, hint) -> dict:
    """argparse keywords for one field: its type (Optional unwrapped), help and choices."""
    kw = {"dest": f.name, "default": None, "help": f.metadata.get("help")}
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    if hint is bool:
        return {**kw, "action": argparse.BooleanOptionalAction}
    if typing.get_origin(hint) is tuple:
        return {**kw, "type": typing.get_args(hint)[0], "nargs": "+"}
    if f.metadata.get("choices"):
        kw["choices"] = f.metadata["choices"]
    return {**kw, "type": hint}


def add_recipe_flags(p: argparse.ArgumentParser, only: tuple[str, ...] | None = None) -> None:
    """A flag for every Recipe field (or for the fields in `only`), default None: "the recipe's"."""
    hints = typing.get_type_hints(Recipe)
    fields = recipe_fields(only)
    length = p.add_mutually_exclusive_group() if any(f.name in _LENGTH for f in fields) else None
    for f in fields:
        (length if f.name in _LENGTH else p).add_argument(flag(f.name), **_argument(f, hints[f.name]))


def recipe_overrides(args: argparse.Namespace, only: tuple[str, ...] | None = None) -> dict:
    """The recipe fields given on the command line (those left at None keep the recipe's value)."""
    return {f.name: getattr(args, f.name) for f in recipe_fields(only) if getattr(args, f.name) is not None}
