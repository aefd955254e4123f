/**
 * @file export.h
 * @brief KVBM_API: what marks a function as part of libkvbm's interface.
 *
 * libkvbm is compiled with hidden visibility, so libkvbm.so exports exactly
 * the functions declared with KVBM_API in front, and every function declared
 * in include/kvbm/ carries it. To add a public function: declare it in a
 * header of include/kvbm/ (a new header includes this one) as
 *
 *     KVBM_API kvbm_status_t kvbm_thing_do(kvbm_thing_t *thing);
 *
 * and define it in its module as usual. The test `exported_symbols` fails
 * when a function declared in include/kvbm/ is not exported (KVBM_API
 * forgotten) or when libkvbm.so exports anything else (KVBM_API on an
 * internal function, or a source compiled without hidden visibility).
 * Functions defined `static inline` in a public header are compiled into
 * the caller and are not exported.
 */
#ifndef KVBM_EXPORT_H
#define KVBM_EXPORT_H

#if defined(__GNUC__) || defined(__clang__)
#define KVBM_API __attribute__((visibility("default")))
#else
#define KVBM_API
#endif

#endif /* KVBM_EXPORT_H */
