"""The cffi FFI object, declared from _cdefs.h (ABI mode: nothing is compiled)."""
import os

import cffi

CDEFS_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_cdefs.h")

ffi = cffi.FFI()
with open(CDEFS_PATH, encoding="utf-8") as f:
    ffi.cdef(f.read())

# The C library's in-memory stream, for the calls that write to a FILE *.
_LIBC_CDEFS = """
FILE *open_memstream(char **ptr, size_t *sizeloc);
int fclose(FILE *stream);
void free(void *ptr);
"""
ffi.cdef(_LIBC_CDEFS)
libc = ffi.dlopen(None)
#: The #define constants of _cdefs.h, readable before libkvbm is loaded
#: (cffi serves them from any library opened through this FFI).
constants = libc
