#!/usr/bin/env python3
"""Writes a stand-in for a shared library that the GPU check never calls into.

Debian's libavcodec and libavfilter link encoders and filters (x265, codec2, rsvg, flite voices, ...) that
a decode-and-thumbnail check never uses, and their size alone keeps the bundle over the device tool's
transfer limit. The stand-in has the same soname and exports the same symbols, with the same versions,
so the dynamic loader is satisfied; each function traps if it is ever called, so a wrong guess fails
loudly instead of giving wrong results. usage: stub_lib.py REAL_LIB OUT_LIB
"""
import os
import re
import subprocess
import sys
import tempfile


def exported(lib):
    """(name, kind 'F' or 'O', size, version or None) of every symbol lib defines."""
    out = subprocess.run(["objdump", "-T", lib], capture_output=True, text=True, check=True).stdout
    symbols = []
    for line in out.splitlines():
        tokens = line.split()
        kinds = [i for i, t in enumerate(tokens) if t in ("DF", "DO")]
        if not kinds or len(tokens) < kinds[0] + 4:
            continue
        at = kinds[0]
        section, size, rest = tokens[at + 1], tokens[at + 2], tokens[at + 3:]
        name = rest[-1]
        version = rest[0] if len(rest) == 2 else None
        if section == "*UND*" or name in ("_init", "_fini"):
            continue
        if version in ("Base", None) or version.startswith("("):
            version = None
        symbols.append((name, "F" if tokens[at] == "DF" else "O", int(size, 16), version))
    return symbols


def soname(lib):
    out = subprocess.run(["objdump", "-p", lib], capture_output=True, text=True, check=True).stdout
    match = re.search(r"SONAME\s+(\S+)", out)
    return match.group(1) if match else os.path.basename(lib)


def main():
    real, out = sys.argv[1], sys.argv[2]
    symbols = exported(real)
    with tempfile.TemporaryDirectory() as tmp:
        source, script = os.path.join(tmp, "stub.c"), os.path.join(tmp, "stub.map")
        with open(source, "w") as f:
            for name, kind, size, _ in symbols:
                if kind == "F":
                    f.write(f"void {name}(void) {{ __builtin_trap(); }}\n")
                else:
                    f.write(f"char {name}[{max(size, 1)}];\n")
        versions = {}
        for name, _, _, version in symbols:
            versions.setdefault(version, []).append(name)
        with open(script, "w") as f:
            for version, names in versions.items():
                body = " ".join(f"{n};" for n in names)
                f.write(f"{version or ''} {{ global: {body} }};\n" if version else f"{{ global: {body} }};\n")
        named = [v for v in versions if v]
        flags = [f"-Wl,--version-script={script}"] if named else []
        subprocess.run(["gcc", "-shared", "-fPIC", "-w", "-fno-builtin", "-o", out, source,
                        f"-Wl,-soname,{soname(real)}"] + flags, check=True)


if __name__ == "__main__":
    main()
