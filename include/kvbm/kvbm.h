/**
 * @file kvbm.h
 * @brief Umbrella header of kvbm, the KV-cache block manager.
 */
#ifndef KVBM_KVBM_H
#define KVBM_KVBM_H

#include "kvbm/admission.h"
#include "kvbm/backend.h"
#include "kvbm/cache.h"
#include "kvbm/disk.h"
#include "kvbm/event_record.h"
#include "kvbm/events.h"
#include "kvbm/hash.h"
#include "kvbm/layout.h"
#include "kvbm/log.h"
#include "kvbm/manager.h"
#include "kvbm/metrics.h"
#include "kvbm/policy.h"
#include "kvbm/status.h"
#include "kvbm/version.h"
#include "kvbm/xfer.h"

#endif /* KVBM_KVBM_H */
