/*
 * An intrusive doubly linked list of block ids over two preallocated arrays.
 * Policies use one or more of these to order inactive blocks in O(1) without
 * allocating. Not thread-safe: the owner's lock protects it.
 */
#ifndef KVBM_HOST_BLOCK_LIST_H
#define KVBM_HOST_BLOCK_LIST_H

#include <assert.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kvbm/policy.h"

/* Links shared by several lists: a block is on at most one list at a time. */
typedef struct kvbm__block_links {
    uint32_t *prev; /* capacity entries; KVBM_BLOCK_NONE at the ends */
    uint32_t *next;
} kvbm__block_links_t;

typedef struct kvbm__block_list {
    uint32_t head; /* oldest (front) */
    uint32_t tail; /* newest (back) */
    size_t size;
} kvbm__block_list_t;

static inline void kvbm__block_list_init(kvbm__block_list_t *list)
{
    list->head = KVBM_BLOCK_NONE;
    list->tail = KVBM_BLOCK_NONE;
    list->size = 0;
}

static inline void kvbm__block_list_push_back(kvbm__block_list_t *list, kvbm__block_links_t *links,
                                              uint32_t id)
{
    links->prev[id] = list->tail;
    links->next[id] = KVBM_BLOCK_NONE;
    if (list->tail != KVBM_BLOCK_NONE)
        links->next[list->tail] = id;
    else
        list->head = id;
    list->tail = id;
    list->size++;
}

static inline void kvbm__block_list_unlink(kvbm__block_list_t *list, kvbm__block_links_t *links,
                                           uint32_t id)
{
    assert(list->size > 0);
    uint32_t prev = links->prev[id];
    uint32_t next = links->next[id];
    if (prev != KVBM_BLOCK_NONE)
        links->next[prev] = next;
    else
        list->head = next;
    if (next != KVBM_BLOCK_NONE)
        links->prev[next] = prev;
    else
        list->tail = prev;
    links->prev[id] = KVBM_BLOCK_NONE;
    links->next[id] = KVBM_BLOCK_NONE;
    list->size--;
}

static inline bool kvbm__block_list_pop_front(kvbm__block_list_t *list, kvbm__block_links_t *links,
                                              uint32_t *id_out)
{
    if (list->head == KVBM_BLOCK_NONE)
        return false;
    uint32_t id = list->head;
    kvbm__block_list_unlink(list, links, id);
    *id_out = id;
    return true;
}

#endif /* KVBM_HOST_BLOCK_LIST_H */
