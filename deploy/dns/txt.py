"""TXT values in the quoted text form the DNS APIs use (Route 53, Hetzner's RRSets).

Both APIs take and give a TXT record as its character-strings, each quoted,
separated by spaces, `"` and `\\` escaped; a string holds at most 255 bytes,
so a longer mark is split over several strings, and read back joined.
"""

from __future__ import annotations

TXT_CHUNK = 255  # a TXT character-string holds at most 255 bytes


def quote_txt(text: str) -> str:
    """`text` as the APIs want a TXT value: quoted strings of at most 255 bytes each,
    `"` and `\\` escaped."""
    chunks = [""]
    for char in text:  # split between characters, never inside one's UTF-8 bytes
        if len((chunks[-1] + char).encode()) > TXT_CHUNK:
            chunks.append("")
        chunks[-1] += char
    escaped = (c.replace("\\", "\\\\").replace('"', '\\"') for c in chunks)
    return " ".join(f'"{c}"' for c in escaped)


def unquote_txt(value: str) -> str:
    """A TXT value back to its text: the quoted strings joined, escapes resolved
    (`\\"`, `\\\\`, and Route 53's `\\DDD` octal byte codes). `"a" "b"` -> `ab`."""
    out = bytearray()
    quoted = False
    i = 0
    while i < len(value):
        c = value[i]
        if c == "\\" and i + 1 < len(value):
            digits = value[i + 1 : i + 4]
            if len(digits) == 3 and all(d in "01234567" for d in digits):
                out.append(int(digits, 8) & 0xFF)
                i += 4
                continue
            out += value[i + 1].encode()
            i += 2
            continue
        if c == '"':
            quoted = not quoted
        elif quoted or not c.isspace():
            out += c.encode()
        i += 1
    return out.decode(errors="replace")
