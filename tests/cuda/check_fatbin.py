#!/usr/bin/env python3
"""Lists the device code an object file carries and checks it.

    check_fatbin.py [--require-sass SM]... [--require-ptx SM]... OBJECT...

Reads the .nv_fatbin section of each ELF object (nvcc's fatbinary: a
header, then entries of kind 1 = PTX or 2 = ELF cubin, each naming its
sm_XX) with the Python standard library only, because cuobjdump is not part
of the CUDA installation on the CI machine; where cuobjdump exists,
`cuobjdump --list-elf --list-ptx OBJECT` shows the same. Cubin entries are
cross-checked against their own ELF header (the arch in e_flags). Exit 0
when every required entry is present, 1 otherwise, 77 (skip) when an object
has no fatbinary at all.
"""
import struct
import sys

FATBIN_MAGIC = 0xBA55ED50
KIND_PTX, KIND_ELF = 1, 2


def section(data, name):
    """Bytes of the ELF64 section called name, or None."""
    if data[:4] != b"\x7fELF" or data[4] != 2:
        raise ValueError("not an ELF64 object")
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    def header(i):
        return struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize)
    names_off = header(shstrndx)[4]
    for i in range(shnum):
        h = header(i)
        end = data.index(b"\0", names_off + h[0])
        if data[names_off + h[0]:end].decode() == name:
            return data[h[4]:h[4] + h[5]]
    return None


def entries(fatbin):
    """(kind, sm, payload) for every entry of every fatbinary in the section."""
    out, off = [], 0
    while off + 16 <= len(fatbin):
        magic, _version, hsize, fsize = struct.unpack_from("<IHHQ", fatbin, off)
        if magic != FATBIN_MAGIC:
            break
        p, end = off + hsize, off + hsize + fsize
        while p < end:
            kind, _v, ehsize, padded = struct.unpack_from("<HHIQ", fatbin, p)
            sm, = struct.unpack_from("<I", fatbin, p + 28)
            out.append((kind, sm, fatbin[p + ehsize:p + ehsize + padded]))
            p += ehsize + padded
        off = end
    return out


def main(argv):
    need_sass, need_ptx, objects = set(), set(), []
    it = iter(argv)
    for arg in it:
        if arg == "--require-sass":
            need_sass.add(int(next(it)))
        elif arg == "--require-ptx":
            need_ptx.add(int(next(it)))
        else:
            objects.append(arg)
    sass, ptx = set(), set()
    for path in objects:
        data = open(path, "rb").read()
        fatbin = section(data, ".nv_fatbin")
        if fatbin is None:
            print(f"{path}: no .nv_fatbin section")
            return 77
        for kind, sm, payload in entries(fatbin):
            if kind == KIND_ELF:
                if payload[:4] == b"\x7fELF":
                    e_flags, = struct.unpack_from("<I", payload, 0x30)
                    if (e_flags >> 8) & 0xFF != sm and e_flags & 0xFF != sm:
                        print(f"{path}: cubin says sm_{sm} but its ELF flags are {e_flags:#x}")
                        return 1
                sass.add(sm)
                print(f"{path}: ELF (SASS) sm_{sm}")
            elif kind == KIND_PTX:
                ptx.add(sm)
                print(f"{path}: PTX compute_{sm}")
    missing = [f"SASS sm_{s}" for s in sorted(need_sass - sass)]
    missing += [f"PTX compute_{s}" for s in sorted(need_ptx - ptx)]
    if missing:
        print("missing: " + ", ".join(missing))
        return 1
    print("ok: " + ", ".join([f"SASS sm_{s}" for s in sorted(need_sass)] +
                              [f"PTX compute_{s}" for s in sorted(need_ptx)]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
