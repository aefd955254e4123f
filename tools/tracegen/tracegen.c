/* The event loop that interleaves sessions, and the output; see tracegen.h. */
#include "tracegen.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "shapes.h"

static const char *const shape_names[TRACEGEN_SHAPE_COUNT] = {
#define TRACEGEN_SHAPE_NAME(name) #name,
    TRACEGEN_SHAPES_LIST(TRACEGEN_SHAPE_NAME)
#undef TRACEGEN_SHAPE_NAME
};

const char *tracegen_shape_name(tracegen_shape_t shape)
{
    return shape < TRACEGEN_SHAPE_COUNT ? shape_names[shape] : "?";
}

/* Presets: weights in TRACEGEN_SHAPES_LIST order. */
typedef struct preset {
    const char *name;
    double weights[TRACEGEN_SHAPE_COUNT];
} preset_t;

static const preset_t presets[] = {
    {"chat", {1, 0, 0, 0, 0}},      {"agent", {0, 1, 0, 0, 0}},  {"sysprompt", {0, 0, 1, 0, 0}},
    {"rag", {0, 0, 0, 1, 0}},       {"scan", {0, 0, 1, 0.5, 1}}, /* bursts over a hot set */
    {"mix", {1, 1, 0.5, 0.5, 0.5}},
};

static int shape_by_name(const char *name, size_t length, tracegen_shape_t *shape_out)
{
    for (int s = 0; s < TRACEGEN_SHAPE_COUNT; s++) {
        if (strlen(shape_names[s]) == length && strncmp(shape_names[s], name, length) == 0) {
            *shape_out = (tracegen_shape_t)s;
            return 0;
        }
    }
    return -1;
}

int tracegen_parse_workload(const char *spec, double weights[TRACEGEN_SHAPE_COUNT], char *error,
                            size_t error_size)
{
    for (size_t i = 0; i < sizeof(presets) / sizeof(presets[0]); i++) {
        if (strcmp(spec, presets[i].name) == 0) {
            memcpy(weights, presets[i].weights, sizeof(presets[i].weights));
            return 0;
        }
    }
    double parsed[TRACEGEN_SHAPE_COUNT] = {0};
    bool named[TRACEGEN_SHAPE_COUNT] = {false};
    bool any = false;
    const char *item = spec;
    while (*item != '\0') {
        size_t length = strcspn(item, ",");
        size_t name_length = strcspn(item, ":,");
        tracegen_shape_t shape;
        if (shape_by_name(item, name_length, &shape) != 0) {
            snprintf(error, error_size, "unknown workload or shape '%.*s'", (int)name_length, item);
            return -1;
        }
        double weight = 1.0;
        if (name_length < length) {
            char number[32];
            size_t number_length = length - name_length - 1;
            if (number_length == 0 || number_length >= sizeof(number)) {
                snprintf(error, error_size, "bad weight in '%.*s'", (int)length, item);
                return -1;
            }
            memcpy(number, item + name_length + 1, number_length);
            number[number_length] = '\0';
            char *end = NULL;
            weight = strtod(number, &end);
            if (end == number || *end != '\0' || !(weight >= 0.0) || !isfinite(weight) ||
                weight > 1e6) {
                snprintf(error, error_size, "bad weight in '%.*s'", (int)length, item);
                return -1;
            }
        }
        /* A shape named twice has no one weight: refused, not last-wins. */
        if (named[shape]) {
            snprintf(error, error_size, "shape '%.*s' named twice", (int)name_length, item);
            return -1;
        }
        named[shape] = true;
        parsed[shape] = weight;
        any |= weight > 0.0;
        item += length;
        if (*item == ',' && *++item == '\0') {
            snprintf(error, error_size, "empty shape after the last ',' in '%s'", spec);
            return -1;
        }
    }
    if (!any) {
        snprintf(error, error_size, "workload '%s' has no shape with a positive weight", spec);
        return -1;
    }
    memcpy(weights, parsed, sizeof(parsed));
    return 0;
}

/* A pending event: a session's next request, or a shape's next arrival. */
typedef struct event {
    double ms;
    uint64_t seq;              /* ties go to the earlier scheduled */
    shapes_session_t *session; /* NULL: an arrival of `shape` */
    tracegen_shape_t shape;
} event_t;

typedef struct event_heap {
    event_t *at;
    size_t size;
    size_t capacity;
    uint64_t next_seq;
} event_heap_t;

static bool event_before(const event_t *a, const event_t *b)
{
    return a->ms < b->ms || (a->ms == b->ms && a->seq < b->seq);
}

static int heap_push(event_heap_t *heap, double ms, shapes_session_t *session,
                     tracegen_shape_t shape)
{
    if (heap->size == heap->capacity) {
        size_t capacity = heap->capacity < 64 ? 64 : heap->capacity * 2;
        event_t *grown = realloc(heap->at, capacity * sizeof(event_t));
        if (grown == NULL)
            return -1;
        heap->at = grown;
        heap->capacity = capacity;
    }
    size_t i = heap->size++;
    event_t e = {.ms = ms, .seq = heap->next_seq++, .session = session, .shape = shape};
    while (i > 0 && event_before(&e, &heap->at[(i - 1) / 2])) {
        heap->at[i] = heap->at[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    heap->at[i] = e;
    return 0;
}

static event_t heap_pop(event_heap_t *heap)
{
    event_t top = heap->at[0];
    event_t last = heap->at[--heap->size];
    size_t i = 0;
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= heap->size)
            break;
        if (child + 1 < heap->size && event_before(&heap->at[child + 1], &heap->at[child]))
            child++;
        if (!event_before(&heap->at[child], &last))
            break;
        heap->at[i] = heap->at[child];
        i = child;
    }
    if (heap->size > 0)
        heap->at[i] = last;
    return top;
}

static void session_free(shapes_session_t *session)
{
    if (session == NULL)
        return;
    tracegen_prompt_free(&session->context);
    free(session);
}

static int write_request(FILE *out, double ms, uint64_t input_tokens, uint32_t output,
                         const uint64_t *ids, size_t count)
{
    /* A fixed shape of integers, printed directly: the bytes then depend on
     * nothing but the values (a JSON library's spacing differs by version). */
    if (fprintf(out,
                "{\"timestamp\": %llu, \"input_length\": %llu, \"output_length\": %u, "
                "\"hash_ids\": [",
                (unsigned long long)llround(ms), (unsigned long long)input_tokens, output) < 0)
        return -1;
    for (size_t i = 0; i < count; i++)
        if (fprintf(out, i > 0 ? ", %llu" : "%llu", (unsigned long long)ids[i]) < 0)
            return -1;
    return fputs("]}\n", out) < 0 ? -1 : 0;
}

/* Session arrival rates per ms from the weights; -1 with a reason when a
 * weight is not a finite non-negative number or none is positive. */
static int arrival_rates(const tracegen_options_t *options, double rates[TRACEGEN_SHAPE_COUNT],
                         char *error, size_t error_size)
{
    bool any = false;
    for (int s = 0; s < TRACEGEN_SHAPE_COUNT; s++) {
        double w = options->weights[s];
        if (!(w >= 0.0) || !isfinite(w)) {
            snprintf(error, error_size, "weight of %s is not a finite non-negative number",
                     shape_names[s]);
            return -1;
        }
        rates[s] = w * shapes_base_rate((tracegen_shape_t)s) / 1000.0;
        any |= rates[s] > 0.0;
    }
    if (!any) {
        snprintf(error, error_size, "no shape has a positive weight");
        return -1;
    }
    return 0;
}

/* What one generation run owns. */
typedef struct generator {
    tracegen_rng_t rng;
    shapes_world_t world;
    tracegen_namer_t *namer;
    event_heap_t heap;
    double rates[TRACEGEN_SHAPE_COUNT];
} generator_t;

/* The next request in time order: starts a session on an arrival (and
 * schedules the shape's next arrival), writes the session's request, and
 * schedules its next one or ends it. Returns 0, or -1 with a reason. */
static int write_next(generator_t *g, FILE *out, char *error, size_t error_size)
{
    event_t e = heap_pop(&g->heap);
    shapes_session_t *session = e.session;
    snprintf(error, error_size, "out of memory");
    if (session == NULL) {
        session = calloc(1, sizeof(*session));
        if (session == NULL)
            return -1;
        if (shapes_session_start(&g->world, &g->rng, e.shape, e.ms, session) != 0 ||
            heap_push(&g->heap, e.ms + tracegen_rng_exponential(&g->rng, 1.0 / g->rates[e.shape]),
                      NULL, e.shape) != 0)
            goto err_free_session;
    }
    /* Name the blocks of the context as sent, then let the session draw the
     * reply and grow (which changes the context). */
    const uint64_t *ids = NULL;
    size_t count = 0;
    uint64_t input_tokens = session->context.tokens;
    double sent_ms = session->next_ms;
    uint32_t output = 0;
    bool done = false;
    if (tracegen_namer_name(g->namer, &session->context, &ids, &count) != 0 ||
        shapes_session_advance(&g->world, &g->rng, session, &output, &done) != 0)
        goto err_free_session;
    if (write_request(out, sent_ms, input_tokens, output, ids, count) != 0) {
        snprintf(error, error_size, "write error");
        goto err_free_session;
    }
    if (done)
        session_free(session);
    else if (heap_push(&g->heap, session->next_ms, session, session->shape) != 0)
        goto err_free_session;
    return 0;

err_free_session:
    session_free(session);
    return -1;
}

int tracegen_write(const tracegen_options_t *options, FILE *out, char *error, size_t error_size)
{
    if (options->requests == 0 || options->block_tokens == 0) {
        snprintf(error, error_size, "requests and block tokens must be positive");
        return -1;
    }
    generator_t g = {0};
    if (arrival_rates(options, g.rates, error, error_size) != 0)
        return -1;
    int result = -1;
    tracegen_rng_seed(&g.rng, options->seed);
    snprintf(error, error_size, "out of memory");
    if (shapes_world_init(&g.world, &g.rng) != 0)
        return -1;
    if (tracegen_namer_create(options->block_tokens, &g.namer) != 0)
        goto out_fini_world;
    for (int s = 0; s < TRACEGEN_SHAPE_COUNT; s++)
        if (g.rates[s] > 0.0 &&
            heap_push(&g.heap, tracegen_rng_exponential(&g.rng, 1.0 / g.rates[s]), NULL,
                      (tracegen_shape_t)s) != 0)
            goto out_free_events;
    for (size_t written = 0; written < options->requests; written++)
        if (write_next(&g, out, error, error_size) != 0)
            goto out_free_events;
    result = 0;

out_free_events:
    for (size_t i = 0; i < g.heap.size; i++)
        session_free(g.heap.at[i].session);
    free(g.heap.at);
    tracegen_namer_destroy(g.namer);
out_fini_world:
    shapes_world_fini(&g.world);
    return result;
}
