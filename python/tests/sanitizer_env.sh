# Sourced by run_pytest.sh and install_test.sh: python3 is not instrumented,
# libkvbm.so is in sanitizer builds (KVBM_SANITIZE, set by ctest).
# ASan: kvbm_preload names the runtime to preload into the interpreter (only
# there: not into cmake or pip), leak checking off (the interpreter keeps its
# own allocations to exit). TSan: exit 77 (skipped): TSan must start with the
# process and would report the interpreter's own threads.
kvbm_preload=""
case "${KVBM_SANITIZE:-}" in
  thread)
    echo "python: skipped in the TSan build (TSan cannot be loaded into python3); it runs in the normal and ASan builds"
    exit 77 ;;
  address)
    kvbm_preload=$("${KVBM_CC:-cc}" -print-file-name=libasan.so)
    export ASAN_OPTIONS=detect_leaks=0:strict_string_checks=1 ;;
esac
