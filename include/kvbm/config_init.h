/**
 * @file config_init.h
 * @brief How every config struct gets its defaults, in C and in C++.
 *
 * Each config struct lists its defaults once, as an X-macro
 * `KVBM_<NAME>_CONFIG_DEFAULTS(X, P)` of `X(P, field, value)` entries;
 * fields it does not list are zero. From that one list come
 * - `kvbm_<name>_config_init(&config)`: a static inline function that zeroes
 *   the struct and sets the defaults, the same in C and C++;
 * - `KVBM_<NAME>_CONFIG_INIT`: an initializer, designated initializers in C
 *   and, in C++ (where those are a C++20 feature and incomplete ones warn), a
 *   call of the init function, so `kvbm_<name>_config_t c =
 *   KVBM_<NAME>_CONFIG_INIT;` compiles warning-free in both.
 * Both are compiled into the caller: the struct_size and version they
 * record are those of the header the caller was built with, which any later
 * library accepts.
 *
 * P prefixes the field names, so a struct that embeds another expands the
 * other's list with `P inner.` (kvbm_cache_config_t's `layout.`).
 *
 * A new config struct follows the pattern of kvbm/layout.h: the _DEFAULTS
 * list, then the two forms of KVBM_THING_CONFIG_INIT (C++: a call of
 * KVBM_CONFIG_INIT_CXX(kvbm_thing_config_t, kvbm_thing_config_init); C:
 * braces around KVBM_THING_CONFIG_DEFAULTS(KVBM_CONFIG_DESIGNATE, )) and
 * the init function, a memset to zero followed by
 * KVBM_THING_CONFIG_DEFAULTS(KVBM_CONFIG_ASSIGN, ).
 */
#ifndef KVBM_CONFIG_INIT_H
#define KVBM_CONFIG_INIT_H

#include <string.h>

/** One designated initializer of a _DEFAULTS entry (C). */
#define KVBM_CONFIG_DESIGNATE(P, field, value) .P field = (value),
/** One assignment of a _DEFAULTS entry to `config`, in an init function. */
#define KVBM_CONFIG_ASSIGN(P, field, value) config->P field = (value);

#ifdef __cplusplus
/** The C++ form of an initializer macro: a value filled by the init function. */
#define KVBM_CONFIG_INIT_CXX(type, init_fn)                                                        \
    ([] {                                                                                          \
        type kvbm_config_;                                                                         \
        init_fn(&kvbm_config_);                                                                    \
        return kvbm_config_;                                                                       \
    }())
#endif

#endif /* KVBM_CONFIG_INIT_H */
