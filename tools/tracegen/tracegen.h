/*
 * kvbm-tracegen's core: synthetic request traces in the Mooncake format
 * (shared/REPLAY.md, "Input") for the shapes a serving engine sees, seeded
 * and deterministic: the same options give the same bytes.
 *
 * Shapes (docs/TRACEGEN.md gives every parameter and why):
 *   chat       multi-turn conversations; each turn re-sends the history
 *   agent      agent loops: a large tool-spec system prompt, then many quick
 *              steps, each re-sending the growing context with a tool result
 *   sysprompt  single-turn requests behind a few shared system prompts
 *              (Zipf popularity)
 *   rag        requests carrying retrieved documents from a shared corpus
 *              (Zipf popularity) before a short question
 *   scan       bursts of one-off long prompts (batch jobs): scan pollution
 *
 * A workload is a weighted mixture of shapes: each shape's sessions arrive
 * as a Poisson process at its base rate times its weight, and all sessions
 * interleave by timestamp.
 */
#ifndef KVBM_TRACEGEN_TRACEGEN_H
#define KVBM_TRACEGEN_TRACEGEN_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define TRACEGEN_SHAPES_LIST(X)                                                                    \
    X(chat)                                                                                        \
    X(agent)                                                                                       \
    X(sysprompt)                                                                                   \
    X(rag)                                                                                         \
    X(scan)

typedef enum tracegen_shape {
#define TRACEGEN_SHAPE_ENUM(name) TRACEGEN_SHAPE_##name,
    TRACEGEN_SHAPES_LIST(TRACEGEN_SHAPE_ENUM)
#undef TRACEGEN_SHAPE_ENUM
        TRACEGEN_SHAPE_COUNT
} tracegen_shape_t;

typedef struct tracegen_options {
    uint64_t seed;
    size_t requests;                      /* lines to write, >= 1 */
    uint32_t block_tokens;                /* tokens per block id, >= 1 (Mooncake: 512) */
    double weights[TRACEGEN_SHAPE_COUNT]; /* session rate multipliers; 0 = absent */
} tracegen_options_t;

/* The name of a shape ("chat", ...). */
const char *tracegen_shape_name(tracegen_shape_t shape);

/*
 * Fills @p weights from a workload spec: a preset name (chat, agent,
 * sysprompt, rag, scan, mix; docs/TRACEGEN.md lists their weights) or a
 * comma list of shape[:weight] items ("chat:2,rag:1,scan:0.5"; weight 1 when
 * omitted). Returns 0, or -1 with a reason in @p error (weights unchanged).
 */
int tracegen_parse_workload(const char *spec, double weights[TRACEGEN_SHAPE_COUNT], char *error,
                            size_t error_size);

/*
 * Writes options->requests JSON lines to @p out. Returns 0, or -1 with a
 * reason in @p error (bad options, out of memory, a write error).
 */
int tracegen_write(const tracegen_options_t *options, FILE *out, char *error, size_t error_size);

#endif /* KVBM_TRACEGEN_TRACEGEN_H */
