#!/usr/bin/env python3
"""Checks the relative links of every Markdown file in the repository.

A link `[text](path)` or `[text](path#anchor)` fails when `path`, resolved from the file's own
directory, does not exist, or when `#anchor` names no heading of the target Markdown file
(GitHub's slugs: lowercase, punctuation dropped but `-` and `_`, spaces to `-`, a repeated
heading's slug suffixed `-1`, `-2`…). `#anchor` alone refers to the file itself. External links
(`http:`, `https:`, `mailto:`) are not checked; links inside code (fenced blocks and `inline`
spans) are not links.

Usage: scripts/check_links.py [ROOT]   (ROOT: the repository, by default this script's parent's parent)
Exit status: 0 when every link resolves, 1 otherwise (each broken link listed as file:line).
Python 3 standard library only, so `make lint` needs no venv.
"""

from __future__ import annotations

import os
import re
import sys
import unicodedata
from pathlib import Path
from urllib.parse import unquote

SKIP_DIRS = {".git", "target", ".venv", "node_modules", ".aws-sam", ".local"}
EXTERNAL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")  # http:, https:, mailto:, any scheme
FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)[ \t]*#*[ \t]*$")
SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
INLINE_CODE = re.compile(r"(`+)(.+?)\1")
# [text](target) and ![alt](target); the target may be <bracketed> and followed by a "title".
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*(<[^>]*>|[^\s()]*(?:\([^\s()]*\)[^\s()]*)*)(?:\s+(?:\"[^\"]*\"|'[^']*'))?\s*\)")
# [label]: target (reference definitions).
REF_DEF = re.compile(r"^ {0,3}\[[^\]]+\]:\s*(<[^>]*>|\S+)")
HTML_ANCHOR = re.compile(r"<a\s+[^>]*(?:name|id)=[\"']([^\"']+)[\"']", re.IGNORECASE)


def markdown_files(root: Path):
    for directory, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS)
        for name in sorted(files):
            if name.lower().endswith(".md"):
                yield Path(directory) / name


def outside_fences(text: str):
    """(line number, line) of every line outside fenced code blocks."""
    fence = None
    for number, line in enumerate(text.splitlines(), start=1):
        match = FENCE.match(line)
        if fence is None:
            if match:
                fence = match.group(1)
                continue
            yield number, line
        elif match and match.group(1)[0] == fence[0] and len(match.group(1)) >= len(fence) \
                and not line.strip()[len(match.group(1)):].strip():
            fence = None


def slug(heading: str) -> str:
    """GitHub's anchor for a heading's text."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # links and images: their text
    text = re.sub(r"<[^>]+>", "", text)  # HTML tags
    text = text.strip().lower()
    # GitHub keeps letters, marks, numbers, connector punctuation (`_`), `-` and spaces.
    kept = [c for c in text
            if c in "- " or unicodedata.category(c)[0] in "LNM" or unicodedata.category(c) == "Pc"]
    return "".join(kept).replace(" ", "-")


def anchors(path: Path, cache: dict) -> set:
    """Every anchor of a Markdown file: its headings' slugs and its HTML `name`/`id` anchors."""
    if path not in cache:
        found, seen, previous = set(), {}, ""
        for _, line in outside_fences(path.read_text(encoding="utf-8")):
            found.update(name.lower() for name in HTML_ANCHOR.findall(line))
            match = HEADING.match(line)
            title = match.group(2) if match else None
            if title is None and SETEXT.match(line) and previous.strip() \
                    and not HEADING.match(previous) \
                    and not previous.lstrip().startswith(("|", "-", "*", ">", "<")):
                title = previous.strip()
            if title is not None:
                base = slug(title)
                count = seen.get(base, 0)
                seen[base] = count + 1
                found.add(base if count == 0 else f"{base}-{count}")
            previous = line
        cache[path] = found
    return cache[path]


def links(text: str):
    """(line number, target) of every link outside code."""
    for number, line in outside_fences(text):
        line = INLINE_CODE.sub(lambda m: " " * len(m.group(0)), line)
        for match in LINK.finditer(line):
            yield number, match.group(1)
        ref = REF_DEF.match(line)
        if ref:
            yield number, ref.group(1)


def check(root: Path) -> list:
    problems, cache = [], {}
    for md in markdown_files(root):
        text = md.read_text(encoding="utf-8")
        for number, target in links(text):
            target = target.strip("<>").strip()
            if not target or EXTERNAL.match(target):
                continue
            path_part, _, anchor = target.partition("#")
            path_part = unquote(path_part)
            where = f"{md.relative_to(root)}:{number}"
            if path_part:
                resolved = (root / path_part.lstrip("/")) if path_part.startswith("/") \
                    else (md.parent / path_part)
                if not resolved.exists():
                    problems.append(f"{where}: {target}: no such file")
                    continue
            else:
                resolved = md
            if anchor:
                if resolved.is_dir() or resolved.suffix.lower() != ".md":
                    continue  # anchors of non-Markdown targets (e.g. #L10 of source) are not checked
                if unquote(anchor).lower() not in anchors(resolved, cache):
                    shown = resolved.relative_to(root) if resolved.is_relative_to(root) else resolved
                    problems.append(f"{where}: {target}: no heading #{anchor} in {shown}")
    return problems


def main(argv: list) -> int:
    root = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parent.parent
    root = root.resolve()
    problems = check(root)
    for problem in problems:
        print(problem)
    if problems:
        print(f"check_links: {len(problems)} broken link(s)", file=sys.stderr)
        return 1
    count = sum(1 for _ in markdown_files(root))
    print(f"check_links: every relative link of {count} Markdown files resolves")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
