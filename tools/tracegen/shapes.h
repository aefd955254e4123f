/*
 * The session shapes: what each kind of user sends, and when. Internal to
 * the generator (tracegen.c drives them).
 *
 * A session is one conversation, agent task, batch burst or single request.
 * It holds its context as a prompt; each request re-sends the whole context
 * (as engines do), and the session then grows it (the model's reply, the
 * next user turn, a tool result) or ends.
 */
#ifndef KVBM_TRACEGEN_SHAPES_H
#define KVBM_TRACEGEN_SHAPES_H

#include <stdbool.h>

#include "prompt.h"
#include "rng.h"
#include "tracegen.h"

/* Content shared between sessions: system prompts and documents. */
typedef struct shapes_world {
    uint32_t *chat_system_tokens;  /* CHAT_SYSTEM_PROMPTS lengths */
    uint32_t *agent_system_tokens; /* AGENT_SYSTEM_PROMPTS */
    uint32_t *shared_system_tokens;
    uint32_t *doc_tokens; /* RAG_DOCS */
    tracegen_zipf_t chat_system_rank, agent_system_rank, shared_system_rank, doc_rank;
    uint64_t next_unique; /* content ids of one-off text: messages, replies, tool output */
} shapes_world_t;

typedef struct shapes_session {
    tracegen_shape_t shape;
    tracegen_prompt_t context;
    uint32_t requests_left; /* including the next one */
    double next_ms;         /* when the next request is sent */
} shapes_session_t;

/* Draws the shared content. Returns 0, or -1 when out of memory (nothing to free). */
int shapes_world_init(shapes_world_t *world, tracegen_rng_t *rng);
void shapes_world_fini(shapes_world_t *world);

/* New sessions of @p shape per second at weight 1. */
double shapes_base_rate(tracegen_shape_t shape);

/* Starts a session arriving at @p now_ms: its first context and request count.
 * Returns 0, or -1 when out of memory (free the session's context). */
int shapes_session_start(shapes_world_t *world, tracegen_rng_t *rng, tracegen_shape_t shape,
                         double now_ms, shapes_session_t *session);

/*
 * The session has just sent its context as a request: draws the reply's
 * length into *output_tokens, and unless that was its last request, grows
 * the context and sets next_ms. *done says it ended. Returns 0, or -1 when
 * out of memory.
 */
int shapes_session_advance(shapes_world_t *world, tracegen_rng_t *rng, shapes_session_t *session,
                           uint32_t *output_tokens, bool *done);

#endif /* KVBM_TRACEGEN_SHAPES_H */
