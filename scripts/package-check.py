#!/usr/bin/env python3
"""Checks what `sam build` wrote: every function of the built template has a `bootstrap` that
Lambda can start.

    scripts/package-check.py [--architecture arm64|x86_64] [TEMPLATE]

TEMPLATE defaults to .aws-sam/build/template.yaml. For each AWS::Serverless::Function (or
AWS::Lambda::Function) with a custom runtime (provided.*), its CodeUri directory must hold a
`bootstrap` that is a regular, executable ELF file for the function's architecture (the
function's or the Globals' Architectures, parameters at their defaults, unless --architecture
names the one the build was given), and that needs no glibc newer than its runtime's
(provided.al2023: 2.34, provided.al2: 2.26). Prints one line a function; exits 1 naming every
function that fails.
"""

import argparse
import os
import re
import struct
import sys
from pathlib import Path

from cfnlint.decode import decode

FUNCTION_TYPES = ("AWS::Serverless::Function", "AWS::Lambda::Function")
# ELF e_machine of each Lambda architecture.
MACHINES = {"x86_64": 62, "arm64": 183}
# The glibc of each custom runtime's Amazon Linux.
RUNTIME_GLIBC = {"provided.al2023": (2, 34), "provided.al2": (2, 26)}
SHT_GNU_VERNEED = 0x6FFFFFFE


def elf_facts(path):
    """(e_machine, highest GLIBC_x.y version the file needs or None), for a 64-bit little-endian ELF."""
    data = path.read_bytes()
    if data[:4] != b"\x7fELF":
        raise ValueError("not an ELF file")
    if data[4] != 2 or data[5] != 1:
        raise ValueError("not a 64-bit little-endian ELF file")
    (machine,) = struct.unpack_from("<H", data, 18)
    (shoff,) = struct.unpack_from("<Q", data, 40)
    shentsize, shnum = struct.unpack_from("<HH", data, 58)
    sections = []
    for i in range(shnum):
        _name, kind, _flags, _addr, offset, size, link, info = struct.unpack_from(
            "<IIQQQQII", data, shoff + i * shentsize
        )
        sections.append((kind, offset, size, link, info))
    needed = []
    for kind, offset, _size, link, count in sections:
        if kind != SHT_GNU_VERNEED:
            continue
        strtab = sections[link][1]
        entry = offset
        for _ in range(count):
            _version, aux_count, _file, aux, nxt = struct.unpack_from("<HHIII", data, entry)
            at = entry + aux
            for _ in range(aux_count):
                _hash, _flags, _other, name, aux_next = struct.unpack_from("<IHHII", data, at)
                end = data.index(b"\0", strtab + name)
                needed.append(data[strtab + name : end].decode())
                if not aux_next:
                    break
                at += aux_next
            if not nxt:
                break
            entry += nxt
    glibc = [
        tuple(int(p) for p in m.groups())
        for m in (re.fullmatch(r"GLIBC_(\d+)\.(\d+)(?:\.\d+)?", n) for n in needed)
        if m
    ]
    return machine, max(glibc) if glibc else None


def resolve_architecture(value, parameters):
    """The architecture of an Architectures list, a parameter at its default."""
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if isinstance(value, dict) and set(value) == {"Ref"}:
        value = (parameters.get(value["Ref"]) or {}).get("Default")
    return value if isinstance(value, str) else None


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("template", nargs="?", default=".aws-sam/build/template.yaml")
    parser.add_argument("--architecture", choices=sorted(MACHINES))
    args = parser.parse_args(argv)

    path = Path(args.template)
    if not path.is_file():
        print(f"package-check: no {path}: run `make package` (sam build) first", file=sys.stderr)
        return 1
    template, errors = decode(str(path))
    if errors or template is None:
        print(f"package-check: cannot read {path}: {errors}", file=sys.stderr)
        return 1
    globals_ = (template.get("Globals") or {}).get("Function") or {}
    parameters = template.get("Parameters") or {}
    problems = []
    checked = 0
    for logical_id, resource in (template.get("Resources") or {}).items():
        if resource.get("Type") not in FUNCTION_TYPES:
            continue
        props = resource.get("Properties") or {}
        runtime = props.get("Runtime", globals_.get("Runtime"))
        if not (isinstance(runtime, str) and runtime.startswith("provided")):
            problems.append(f"{logical_id}: runtime {runtime!r} is not a custom runtime (provided.*)")
            continue
        checked += 1
        code_uri = props.get("CodeUri", props.get("Code"))
        if not isinstance(code_uri, str):
            problems.append(f"{logical_id}: CodeUri {code_uri!r} is not a directory sam build wrote")
            continue
        bootstrap = path.parent / code_uri / "bootstrap"
        if not bootstrap.is_file():
            problems.append(f"{logical_id}: no {bootstrap}")
            continue
        if not os.access(bootstrap, os.X_OK):
            problems.append(f"{logical_id}: {bootstrap} is not executable")
            continue
        architecture = args.architecture or resolve_architecture(
            props.get("Architectures", globals_.get("Architectures", ["x86_64"])), parameters
        )
        if architecture not in MACHINES:
            problems.append(f"{logical_id}: cannot tell its architecture ({architecture!r})")
            continue
        try:
            machine, glibc = elf_facts(bootstrap)
        except (ValueError, struct.error, IndexError) as why:
            problems.append(f"{logical_id}: {bootstrap}: {why}")
            continue
        if machine != MACHINES[architecture]:
            problems.append(
                f"{logical_id}: {bootstrap} is for ELF machine {machine}, not {architecture}"
            )
            continue
        limit = RUNTIME_GLIBC.get(runtime)
        if glibc and limit and glibc > limit:
            problems.append(
                f"{logical_id}: {bootstrap} needs GLIBC_{glibc[0]}.{glibc[1]}, "
                f"{runtime} has {limit[0]}.{limit[1]}"
            )
            continue
        size = bootstrap.stat().st_size
        needs = f"GLIBC_{glibc[0]}.{glibc[1]}" if glibc else "no glibc"
        print(
            f"{logical_id:<28} {architecture:<7} {size / 1e6:6.2f} MB  needs {needs:<11} {bootstrap}"
        )
    if checked == 0 and not problems:
        problems.append("no function in the template")
    if problems:
        print(f"package-check: {path}:", file=sys.stderr)
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    print(f"package-check: {checked} functions, each with its bootstrap")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
