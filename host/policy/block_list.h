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

/* A block's two neighbours, side by side so an unlink touches one cache
 * line per block rather than two. KVBM_BLOCK_NONE at the ends. */
typedef struct kvbm__block_link {
    uint32_t prev;
    uint32_t next;
} kvbm__block_link_t;

/* Links shared by several lists: a block is on at most one list at a time. */
typedef struct kvbm__block_links {
    kvbm__block_link_t *at; /* capacity entries, indexed by block id */
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
    links->at[id].prev = list->tail;
    links->at[id].next = KVBM_BLOCK_NONE;
    if (list->tail != KVBM_BLOCK_NONE)
        links->at[list->tail].next = id;
    else
        list->head = id;
    list->tail = id;
    list->size++;
}

static inline void kvbm__block_list_push_front(kvbm__block_list_t *list, kvbm__block_links_t *links,
                                               uint32_t id)
{
    links->at[id].prev = KVBM_BLOCK_NONE;
    links->at[id].next = list->head;
    if (list->head != KVBM_BLOCK_NONE)
        links->at[list->head].prev = id;
    else
        list->tail = id;
    list->head = id;
    list->size++;
}

static inline void kvbm__block_list_unlink(kvbm__block_list_t *list, kvbm__block_links_t *links,
                                           uint32_t id)
{
    assert(list->size > 0);
    uint32_t prev = links->at[id].prev;
    uint32_t next = links->at[id].next;
    if (prev != KVBM_BLOCK_NONE)
        links->at[prev].next = next;
    else
        list->head = next;
    if (next != KVBM_BLOCK_NONE)
        links->at[next].prev = prev;
    else
        list->tail = prev;
    links->at[id].prev = KVBM_BLOCK_NONE;
    links->at[id].next = KVBM_BLOCK_NONE;
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
