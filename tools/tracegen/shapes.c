/* The session shapes and their parameters; see shapes.h and docs/TRACEGEN.md. */
#include "shapes.h"

#include <math.h>
#include <stdlib.h>

/* Content ids: the kind in the top byte, an index below. */
enum content_kind {
    CONTENT_CHAT_SYSTEM = 1,
    CONTENT_AGENT_SYSTEM = 2,
    CONTENT_SHARED_SYSTEM = 3,
    CONTENT_RAG_SYSTEM = 4,
    CONTENT_DOC = 5,
    CONTENT_UNIQUE = 6,
};
#define CONTENT(kind, index) ((uint64_t)(kind) << 56 | (uint64_t)(index))

/* chat: ShareGPT-like conversations behind a few assistant prompts. */
#define CHAT_SYSTEM_PROMPTS   8
#define CHAT_SYSTEM_MIN       400
#define CHAT_SYSTEM_MAX       2000
#define CHAT_TURNS_MEAN       6.0
#define CHAT_TURNS_MAX        50
#define CHAT_USER_MEDIAN      200.0
#define CHAT_USER_SIGMA       1.2
#define CHAT_REPLY_MEDIAN     350.0
#define CHAT_REPLY_SIGMA      0.7
#define CHAT_THINK_MEAN_MS    60000.0
#define CHAT_SESSIONS_PER_SEC 4.0

/* agent: tool-using loops; big shared tool specs, quick steps. */
#define AGENT_SYSTEM_PROMPTS   4
#define AGENT_SYSTEM_MIN       3000
#define AGENT_SYSTEM_MAX       9000
#define AGENT_TASK_MEDIAN      500.0
#define AGENT_TASK_SIGMA       1.0
#define AGENT_STEPS_MEAN       15.0
#define AGENT_STEPS_MAX        100
#define AGENT_CALL_MEDIAN      150.0
#define AGENT_CALL_SIGMA       0.6
#define AGENT_RESULT_MEDIAN    1000.0
#define AGENT_RESULT_SIGMA     1.2
#define AGENT_STEP_MEAN_MS     8000.0
#define AGENT_SESSIONS_PER_SEC 0.5

/* sysprompt: one-shot requests behind shared system prompts. */
#define SHARED_SYSTEM_PROMPTS      512
#define SHARED_SYSTEM_MIN          1000
#define SHARED_SYSTEM_MAX          12000
#define SHARED_SYSTEM_ZIPF         1.0
#define SHARED_USER_MEDIAN         300.0
#define SHARED_USER_SIGMA          1.0
#define SYSPROMPT_SESSIONS_PER_SEC 2.0

/* rag: retrieved documents from a shared corpus, then a question. */
#define RAG_SYSTEM_TOKENS    600
#define RAG_DOCS             5000
#define RAG_DOC_MEDIAN       3000.0
#define RAG_DOC_SIGMA        0.6
#define RAG_DOC_ZIPF         0.9
#define RAG_DOCS_PER_REQUEST 3 /* 1..3 documents, uniform */
#define RAG_QUESTION_MEDIAN  80.0
#define RAG_QUESTION_SIGMA   0.8
#define RAG_REQUESTS_MEAN    1.5 /* follow-up questions on the same documents */
#define RAG_THINK_MEAN_MS    45000.0
#define RAG_SESSIONS_PER_SEC 1.0

/* scan: a batch job's burst of one-off long prompts. */
#define SCAN_BURST_MIN        64
#define SCAN_BURST_MAX        256
#define SCAN_PROMPT_MEDIAN    24000.0
#define SCAN_PROMPT_SIGMA     0.5
#define SCAN_SUMMARY_MEDIAN   200.0
#define SCAN_GAP_MEAN_MS      250.0
#define SCAN_SESSIONS_PER_SEC (1.0 / 600.0)

#define ZIPF_SYSTEM       1.0
#define MAX_CONTEXT       131072u /* a session ends before its context outgrows this */
#define MAX_PIECE         100000u
#define MAX_OUTPUT_TOKENS 4096u

static uint32_t clamp_tokens(double tokens, uint32_t max)
{
    if (!(tokens >= 1.0))
        return 1;
    return tokens >= (double)max ? max : (uint32_t)lround(tokens);
}

static uint32_t lognormal_tokens(tracegen_rng_t *rng, double median, double sigma, uint32_t max)
{
    return clamp_tokens(tracegen_rng_lognormal(rng, median, sigma), max);
}

static uint32_t *uniform_lengths(tracegen_rng_t *rng, size_t n, uint32_t lo, uint32_t hi)
{
    uint32_t *lengths = malloc(n * sizeof(uint32_t));
    if (lengths == NULL)
        return NULL;
    for (size_t i = 0; i < n; i++)
        lengths[i] = lo + (uint32_t)tracegen_rng_below(rng, hi - lo + 1);
    return lengths;
}

int shapes_world_init(shapes_world_t *world, tracegen_rng_t *rng)
{
    *world = (shapes_world_t){0};
    world->chat_system_tokens =
        uniform_lengths(rng, CHAT_SYSTEM_PROMPTS, CHAT_SYSTEM_MIN, CHAT_SYSTEM_MAX);
    world->agent_system_tokens =
        uniform_lengths(rng, AGENT_SYSTEM_PROMPTS, AGENT_SYSTEM_MIN, AGENT_SYSTEM_MAX);
    world->shared_system_tokens =
        uniform_lengths(rng, SHARED_SYSTEM_PROMPTS, SHARED_SYSTEM_MIN, SHARED_SYSTEM_MAX);
    world->doc_tokens = malloc(RAG_DOCS * sizeof(uint32_t));
    if (world->chat_system_tokens == NULL || world->agent_system_tokens == NULL ||
        world->shared_system_tokens == NULL || world->doc_tokens == NULL)
        goto err_fini;
    for (size_t i = 0; i < RAG_DOCS; i++)
        world->doc_tokens[i] = lognormal_tokens(rng, RAG_DOC_MEDIAN, RAG_DOC_SIGMA, 32000);
    if (tracegen_zipf_init(&world->chat_system_rank, CHAT_SYSTEM_PROMPTS, ZIPF_SYSTEM) != 0 ||
        tracegen_zipf_init(&world->agent_system_rank, AGENT_SYSTEM_PROMPTS, ZIPF_SYSTEM) != 0 ||
        tracegen_zipf_init(&world->shared_system_rank, SHARED_SYSTEM_PROMPTS, SHARED_SYSTEM_ZIPF) !=
            0 ||
        tracegen_zipf_init(&world->doc_rank, RAG_DOCS, RAG_DOC_ZIPF) != 0)
        goto err_fini;
    return 0;

err_fini:
    shapes_world_fini(world);
    return -1;
}

void shapes_world_fini(shapes_world_t *world)
{
    tracegen_zipf_fini(&world->chat_system_rank);
    tracegen_zipf_fini(&world->agent_system_rank);
    tracegen_zipf_fini(&world->shared_system_rank);
    tracegen_zipf_fini(&world->doc_rank);
    free(world->chat_system_tokens);
    free(world->agent_system_tokens);
    free(world->shared_system_tokens);
    free(world->doc_tokens);
    *world = (shapes_world_t){0};
}

double shapes_base_rate(tracegen_shape_t shape)
{
    static const double rates[TRACEGEN_SHAPE_COUNT] = {
        [TRACEGEN_SHAPE_chat] = CHAT_SESSIONS_PER_SEC,
        [TRACEGEN_SHAPE_agent] = AGENT_SESSIONS_PER_SEC,
        [TRACEGEN_SHAPE_sysprompt] = SYSPROMPT_SESSIONS_PER_SEC,
        [TRACEGEN_SHAPE_rag] = RAG_SESSIONS_PER_SEC,
        [TRACEGEN_SHAPE_scan] = SCAN_SESSIONS_PER_SEC,
    };
    return rates[shape];
}

/* Appends one-off text (a message, a reply, a tool result) of @p tokens. */
static int append_unique(shapes_world_t *world, tracegen_prompt_t *prompt, uint32_t tokens)
{
    return tracegen_prompt_append(prompt, CONTENT(CONTENT_UNIQUE, world->next_unique++), tokens);
}

static int append_system(tracegen_prompt_t *prompt, enum content_kind kind, size_t index,
                         const uint32_t *lengths)
{
    return tracegen_prompt_append(prompt, CONTENT(kind, index), lengths[index]);
}

/* rag: 1..RAG_DOCS_PER_REQUEST distinct documents, in retrieval order. */
static int append_documents(shapes_world_t *world, tracegen_rng_t *rng, tracegen_prompt_t *prompt)
{
    size_t chosen[RAG_DOCS_PER_REQUEST];
    size_t count = 1 + (size_t)tracegen_rng_below(rng, RAG_DOCS_PER_REQUEST);
    for (size_t i = 0; i < count; i++) {
        bool repeat;
        do {
            chosen[i] = tracegen_zipf_draw(&world->doc_rank, rng);
            repeat = false;
            for (size_t j = 0; j < i; j++)
                repeat |= chosen[j] == chosen[i];
        } while (repeat);
        if (tracegen_prompt_append(prompt, CONTENT(CONTENT_DOC, chosen[i]),
                                   world->doc_tokens[chosen[i]]) != 0)
            return -1;
    }
    return 0;
}

/* scan: one burst prompt, unrelated to anything else. */
static int scan_prompt(shapes_world_t *world, tracegen_rng_t *rng, tracegen_prompt_t *prompt)
{
    tracegen_prompt_clear(prompt);
    return append_unique(world, prompt,
                         lognormal_tokens(rng, SCAN_PROMPT_MEDIAN, SCAN_PROMPT_SIGMA, MAX_PIECE));
}

int shapes_session_start(shapes_world_t *world, tracegen_rng_t *rng, tracegen_shape_t shape,
                         double now_ms, shapes_session_t *session)
{
    *session = (shapes_session_t){.shape = shape, .next_ms = now_ms, .requests_left = 1};
    tracegen_prompt_t *p = &session->context;
    switch (shape) {
    case TRACEGEN_SHAPE_chat: {
        size_t system = tracegen_zipf_draw(&world->chat_system_rank, rng);
        session->requests_left = tracegen_rng_geometric(rng, CHAT_TURNS_MEAN);
        if (session->requests_left > CHAT_TURNS_MAX)
            session->requests_left = CHAT_TURNS_MAX;
        if (append_system(p, CONTENT_CHAT_SYSTEM, system, world->chat_system_tokens) != 0 ||
            append_unique(world, p,
                          lognormal_tokens(rng, CHAT_USER_MEDIAN, CHAT_USER_SIGMA, MAX_PIECE)) != 0)
            return -1;
        return 0;
    }
    case TRACEGEN_SHAPE_agent: {
        size_t system = tracegen_zipf_draw(&world->agent_system_rank, rng);
        session->requests_left = tracegen_rng_geometric(rng, AGENT_STEPS_MEAN);
        if (session->requests_left > AGENT_STEPS_MAX)
            session->requests_left = AGENT_STEPS_MAX;
        if (append_system(p, CONTENT_AGENT_SYSTEM, system, world->agent_system_tokens) != 0 ||
            append_unique(world, p,
                          lognormal_tokens(rng, AGENT_TASK_MEDIAN, AGENT_TASK_SIGMA, MAX_PIECE)) !=
                0)
            return -1;
        return 0;
    }
    case TRACEGEN_SHAPE_sysprompt: {
        size_t system = tracegen_zipf_draw(&world->shared_system_rank, rng);
        if (append_system(p, CONTENT_SHARED_SYSTEM, system, world->shared_system_tokens) != 0 ||
            append_unique(
                world, p,
                lognormal_tokens(rng, SHARED_USER_MEDIAN, SHARED_USER_SIGMA, MAX_PIECE)) != 0)
            return -1;
        return 0;
    }
    case TRACEGEN_SHAPE_rag:
        session->requests_left = tracegen_rng_geometric(rng, RAG_REQUESTS_MEAN);
        if (tracegen_prompt_append(p, CONTENT(CONTENT_RAG_SYSTEM, 0), RAG_SYSTEM_TOKENS) != 0 ||
            append_documents(world, rng, p) != 0 ||
            append_unique(
                world, p,
                lognormal_tokens(rng, RAG_QUESTION_MEDIAN, RAG_QUESTION_SIGMA, MAX_PIECE)) != 0)
            return -1;
        return 0;
    case TRACEGEN_SHAPE_scan:
        session->requests_left =
            SCAN_BURST_MIN + (uint32_t)tracegen_rng_below(rng, SCAN_BURST_MAX - SCAN_BURST_MIN + 1);
        return scan_prompt(world, rng, p);
    case TRACEGEN_SHAPE_COUNT:
        break;
    }
    return -1;
}

int shapes_session_advance(shapes_world_t *world, tracegen_rng_t *rng, shapes_session_t *session,
                           uint32_t *output_tokens, bool *done)
{
    tracegen_prompt_t *p = &session->context;
    uint32_t output = 0, next_input = 0;
    double delay_ms = 0.0;
    switch (session->shape) {
    case TRACEGEN_SHAPE_chat:
        output = lognormal_tokens(rng, CHAT_REPLY_MEDIAN, CHAT_REPLY_SIGMA, MAX_OUTPUT_TOKENS);
        next_input = lognormal_tokens(rng, CHAT_USER_MEDIAN, CHAT_USER_SIGMA, MAX_PIECE);
        delay_ms = tracegen_rng_exponential(rng, CHAT_THINK_MEAN_MS);
        break;
    case TRACEGEN_SHAPE_agent:
        output = lognormal_tokens(rng, AGENT_CALL_MEDIAN, AGENT_CALL_SIGMA, MAX_OUTPUT_TOKENS);
        next_input = lognormal_tokens(rng, AGENT_RESULT_MEDIAN, AGENT_RESULT_SIGMA, MAX_PIECE);
        delay_ms = tracegen_rng_exponential(rng, AGENT_STEP_MEAN_MS);
        break;
    case TRACEGEN_SHAPE_sysprompt:
        output = lognormal_tokens(rng, CHAT_REPLY_MEDIAN, CHAT_REPLY_SIGMA, MAX_OUTPUT_TOKENS);
        break;
    case TRACEGEN_SHAPE_rag:
        output = lognormal_tokens(rng, CHAT_REPLY_MEDIAN, CHAT_REPLY_SIGMA, MAX_OUTPUT_TOKENS);
        next_input = lognormal_tokens(rng, RAG_QUESTION_MEDIAN, RAG_QUESTION_SIGMA, MAX_PIECE);
        delay_ms = tracegen_rng_exponential(rng, RAG_THINK_MEAN_MS);
        break;
    case TRACEGEN_SHAPE_scan:
        output = lognormal_tokens(rng, SCAN_SUMMARY_MEDIAN, CHAT_REPLY_SIGMA, MAX_OUTPUT_TOKENS);
        delay_ms = tracegen_rng_exponential(rng, SCAN_GAP_MEAN_MS);
        break;
    case TRACEGEN_SHAPE_COUNT:
        return -1;
    }
    *output_tokens = output;
    session->requests_left--;
    /* The next request re-sends the context grown by this reply and the next
     * input; a session whose context would outgrow MAX_CONTEXT ends. */
    if (session->requests_left == 0 ||
        p->tokens + (uint64_t)output + next_input > (uint64_t)MAX_CONTEXT) {
        *done = true;
        return 0;
    }
    *done = false;
    session->next_ms += delay_ms;
    if (session->shape == TRACEGEN_SHAPE_scan)
        return scan_prompt(world, rng, p);
    if (append_unique(world, p, output) != 0 || append_unique(world, p, next_input) != 0)
        return -1;
    return 0;
}
