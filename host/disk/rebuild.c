/*
 * The index at open: the table holds a copy of the header of every block
 * published and not since forgotten, so a warm open reads it (sequentially,
 * 64 bytes a slot: 64 MiB for a million blocks) instead of every slot. An
 * entry counts only if its header is valid and names this namespace, this
 * slot and this block size. If two slots claim one hash (possible only
 * after a crash between a rewrite and its predecessor's removal) the newer
 * generation wins. Entries that do not count are cleared.
 *
 * The table is a hint, the slot is the truth: every read still checks the
 * header in the slot and the payload's checksum, so an entry that outlived
 * its data (a power loss in KVBM_DISK_DURABLE_PROCESS mode) is a miss.
 */
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "store_internal.h"

static bool entry_is_zero(const uint8_t *entry)
{
    static const uint8_t zero[KVBM__DISK_HEADER_BYTES];
    return memcmp(entry, zero, sizeof(zero)) == 0;
}

static int by_hash_then_newest(const void *a, const void *b)
{
    const kvbm__disk_entry_t *x = a, *y = b;
    if (x->seq_hash != y->seq_hash)
        return x->seq_hash < y->seq_hash ? -1 : 1;
    return x->generation > y->generation ? -1 : x->generation < y->generation;
}

static int by_generation(const void *a, const void *b)
{
    const kvbm__disk_entry_t *x = a, *y = b;
    return x->generation < y->generation ? -1 : x->generation > y->generation;
}

/* Reads the table into entries; clears entries that do not count. */
static size_t scan_table(kvbm__disk_store_t *store, kvbm__disk_entry_t *entries)
{
    size_t n = 0;
    for (uint64_t slot = 0; slot < store->geometry.slots; slot++) {
        uint8_t *raw = kvbm__disk_table_entry(store, slot);
        kvbm__disk_header_t h;
        if (kvbm__disk_header_decode(raw, &h) && h.slot == slot &&
            h.payload_bytes == store->geometry.payload_bytes &&
            h.fingerprint == store->config.fingerprint && h.generation != 0) {
            entries[n++] = (kvbm__disk_entry_t){
                .slot = (uint32_t)slot, .seq_hash = h.seq_hash, .generation = h.generation};
        } else if (!entry_is_zero(raw)) {
            memset(raw, 0, KVBM__DISK_HEADER_BYTES);
        }
    }
    return n;
}

/* Keeps the newest entry of each hash; forgets the others' slots. */
static size_t drop_duplicates(kvbm__disk_store_t *store, kvbm__disk_entry_t *entries, size_t n)
{
    qsort(entries, n, sizeof(*entries), by_hash_then_newest);
    size_t kept = 0;
    for (size_t i = 0; i < n; i++) {
        if (kept > 0 && entries[kept - 1].seq_hash == entries[i].seq_hash)
            kvbm__disk_store_forget(store, entries[i].slot);
        else
            entries[kept++] = entries[i];
    }
    return kept;
}

kvbm_status_t kvbm__disk_rebuild(kvbm__disk_store_t *store)
{
    kvbm__disk_entry_t *entries = kvbm__alloc(store->geometry.slots, sizeof(*entries));
    if (entries == NULL)
        return KVBM_ERR_NO_MEMORY;
    size_t n = drop_duplicates(store, entries, scan_table(store, entries));
    qsort(entries, n, sizeof(*entries), by_generation);
    uint64_t newest = 0;
    for (size_t i = 0; i < n; i++) {
        store->slot_generation[entries[i].slot] = entries[i].generation;
        newest = entries[i].generation > newest ? entries[i].generation : newest;
    }
    atomic_store_explicit(&store->next_generation, newest + 1, memory_order_relaxed);
    kvbm__disk_count(store, KVBM__DISK_COUNTER_recovered, n);
    store->recovered = entries;
    store->n_recovered = n;
    return KVBM_OK;
}
