"""The one reader for ini-style files (seafile.conf, the ``[store_crypt]`` key file),
with GLib GKeyFile semantics (not configparser).

What it accepts, as GKeyFile does: ``[group]`` lines, ``key = value`` lines,
blank lines and ``#`` comment lines; keys are case-sensitive; values have
surrounding whitespace removed and the escapes ``\\s \\n \\t \\r \\\\`` decoded;
there is no ``%`` interpolation and no continuation lines.  Where GKeyFile would
silently pick one of two meanings, this reader refuses: a repeated group or a
repeated key in a group is a ConfigError (GKeyFile merges them, last one wins).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from .errors import ConfigError

_ESCAPES = {"s": " ", "n": "\n", "t": "\t", "r": "\r", "\\": "\\"}


@dataclass
class KeyFile(Mapping[str, Mapping[str, str]]):
    """Groups of ``key -> value`` in file order; ``source`` names the file in errors."""

    source: str
    groups: dict[str, dict[str, str]] = field(default_factory=dict)
    lines: dict[tuple[str, str | None], int] = field(default_factory=dict)

    def __getitem__(self, group: str) -> Mapping[str, str]:
        return self.groups[group]

    def __iter__(self) -> Iterator[str]:
        return iter(self.groups)

    def __len__(self) -> int:
        return len(self.groups)

    def error(
        self, message: str, section: str | None = None, option: str | None = None
    ) -> ConfigError:
        """A ConfigError naming this file and the given place in it."""
        line = self.lines.get((section, option)) if section is not None else None
        where = f"{self.source}:{line}" if line else self.source
        return ConfigError(message, file=where, section=section, option=option)


def _unescape(value: str, err: ConfigError) -> str:
    out: list[str] = []
    chars = iter(value)
    for ch in chars:
        if ch != "\\":
            out.append(ch)
            continue
        nxt = next(chars, None)
        if nxt is None or nxt not in _ESCAPES:
            raise err
        out.append(_ESCAPES[nxt])
    return "".join(out)


def parse_keyfile(text: str, source: str, *, quote: bool = True) -> KeyFile:
    """Parse key-file text; every syntax error is a ConfigError naming ``source`` and line.
    ``quote=False``: messages never quote the file's text (a key file holds secrets)."""
    kf = KeyFile(source)
    current: str | None = None
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{source}:{number}"
        if line.startswith("["):
            if not line.endswith("]") or len(line) < 3:
                shown = f" {raw.strip()[:40]!r}" if quote else ""
                raise ConfigError(f"malformed group line{shown}", file=where)
            name = line[1:-1]
            if any(c in name for c in "[]") or any(ord(c) < 32 for c in name):
                shown = f" {name[:40]!r}" if quote else ""
                raise ConfigError(f"invalid group name{shown}", file=where)
            if name in kf.groups:
                first = kf.lines[(name, None)]
                raise ConfigError(
                    f"section appears twice (first at line {first}); merge them",
                    file=where,
                    section=name,
                )
            kf.groups[name] = {}
            kf.lines[(name, None)] = number
            current = name
            continue
        if "=" not in line:
            raise ConfigError(
                "expected 'key = value', '[section]' or a '#' comment", file=where, section=current
            )
        key, _, value = line.partition("=")
        key = key.rstrip()
        if current is None:
            raise ConfigError(
                "key before the first [section]", file=where, option=key if quote else None
            )
        if not key or any(ord(c) < 32 for c in key):
            raise ConfigError("empty or invalid key name", file=where, section=current)
        if key in kf.groups[current]:
            first = kf.lines[(current, key)]
            raise ConfigError(
                f"option set twice in one section (first at line {first})",
                file=where,
                section=current,
                option=key,
            )
        bad_escape = ConfigError(
            "invalid escape sequence (GKeyFile knows \\s \\n \\t \\r \\\\)",
            file=where,
            section=current,
            option=key,
        )
        kf.groups[current][key] = _unescape(value.strip(), bad_escape)
        kf.lines[(current, key)] = number
    return kf


def read_keyfile(
    path: str | os.PathLike[str], *, what: str = "a seafile.conf file", quote: bool = True
) -> KeyFile:
    """Read and parse a key file (``what`` it should be, for messages; ``quote``: see
    :func:`parse_keyfile`); unreadable files and non-UTF-8 text are ConfigErrors."""
    source = os.fspath(path)
    try:
        with open(source, "rb") as fh:
            raw = fh.read()
    except IsADirectoryError:
        raise ConfigError(f"is a directory, expected {what}", file=source) from None
    except FileNotFoundError:
        raise ConfigError("no such file", file=source) from None
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", file=source) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError("not valid UTF-8 text", file=f"{source}:{line}") from None
    if text.startswith("\ufeff"):
        text = text[1:]
    if "\x00" in text:
        raise ConfigError("contains a NUL byte", file=source)
    return parse_keyfile(text, source, quote=quote)
